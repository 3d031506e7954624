"""The benchmark runner shipped inside each release (runs alone on the board)."""
