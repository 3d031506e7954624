"""The reference DMS model, its synthetic data set and its training script."""
