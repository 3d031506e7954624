"""The adaptive upload limit (issue 26): it follows the throughput the uploads reach, not a fixed 16."""
from __future__ import annotations

import pytest

from dmsbuild.transport.ssh import UPLOAD_SLOTS, UPLOAD_SLOTS_MAX, AdaptiveSlots


class _Sim:
    """A controller whose throughput (bytes/s) and CPU per byte are functions of the uploads at once."""

    def __init__(self, rate, cpu_per_byte=lambda n: 1e-8) -> None:
        self.now, self.cpu_s = 0.0, 0.0
        self.rate, self.cpu_per_byte = rate, cpu_per_byte
        self.slots = AdaptiveSlots(clock=lambda: self.now, cpu=lambda: self.cpu_s)
        self.slots.waiting = 1  # more uploads than slots: demand above the limit

    def run(self, periods: int) -> list[int]:
        seen = []
        for _ in range(periods):
            n = self.slots.limit
            sent = int(self.rate(n) * self.slots.period)
            self.now += self.slots.period
            self.cpu_s += sent * self.cpu_per_byte(n)
            self.slots.sent(sent)
            seen.append(self.slots.limit)
        return seen


def test_starts_at_the_measured_default_and_climbs_while_throughput_grows():
    sim = _Sim(lambda n: 10e6 * min(n, 40))  # a link that 40 uploads would fill
    assert sim.slots.limit == UPLOAD_SLOTS
    seen = sim.run(40)
    assert seen[-1] == UPLOAD_SLOTS_MAX, seen  # up to its ceiling (more at once cost 3x the CPU at 100 boards)


def test_settles_near_the_peak_when_more_uploads_lose_throughput():
    sim = _Sim(lambda n: 10e6 * (n if n <= 24 else 24 - (n - 24)))  # best at 24
    seen = sim.run(80)
    assert 16 <= seen[-1] <= 32, seen
    assert sum(abs(a - 24) for a in seen[-20:]) / 20 <= 8, seen


def test_a_gain_bought_with_much_more_cpu_per_byte_is_not_taken():
    # the ramp of a rollout: throughput grows while the uploads' threads fight for the GIL
    sim = _Sim(lambda n: 10e6 * n, cpu_per_byte=lambda n: 1e-8 * (n / 16) ** 2)
    seen = sim.run(40)
    assert max(seen) <= 20, seen


def test_does_not_pay_more_cpu_per_byte_for_nothing():
    # beyond 16 the throughput is flat and every extra thread costs CPU (the GIL hand-off measured at 100 boards)
    sim = _Sim(lambda n: 160e6 if n >= 16 else 10e6 * n, cpu_per_byte=lambda n: 1e-8 * (1 + max(0, n - 16) * 0.2))
    seen = sim.run(60)
    assert max(seen) <= 25 and seen[-1] <= 20, seen


def test_no_demand_no_change():
    sim = _Sim(lambda n: 10e6 * n)
    sim.slots.waiting = 0
    assert set(sim.run(20)) == {UPLOAD_SLOTS}


def test_stays_within_bounds():
    sim = _Sim(lambda n: 10e6 * n)
    assert max(sim.run(200)) == sim.slots.high
    sim = _Sim(lambda n: 1e6 / n)  # every extra upload loses: it goes down, never below `low`
    assert min(sim.run(200)) >= sim.slots.low


def test_acquire_blocks_at_the_limit():
    slots = AdaptiveSlots(start=2)
    assert slots.acquire() and slots.acquire()
    assert not slots.acquire(blocking=False)
    slots.release()
    assert slots.acquire(blocking=False)


@pytest.mark.parametrize("raw", ["3"])
def test_a_fixed_setting_is_a_fixed_semaphore(monkeypatch, raw):
    import threading

    from dmsbuild.transport import ssh

    monkeypatch.setenv(ssh.UPLOAD_SLOTS_ENV, raw)
    monkeypatch.setattr(ssh, "_slots", None)
    assert isinstance(ssh.upload_slot(), type(threading.BoundedSemaphore(1)))
    monkeypatch.delenv(ssh.UPLOAD_SLOTS_ENV)
    monkeypatch.setattr(ssh, "_slots", None)
    assert isinstance(ssh.upload_slot(), AdaptiveSlots)


@pytest.mark.parametrize("dip, kept", [(0.97, True), (0.94, False)])
def test_a_throughput_dip_within_5_percent_is_noise_not_a_loss(dip, kept):
    """After a raise, a period at 97 % of the one before (noise on a shared link) keeps the raise; at 94 % it
    lost throughput and is undone (the 5 % band of the class docstring, both ways)."""
    rates = iter([100e6, 100e6 * dip])
    sim = _Sim(lambda n: next(rates))
    sim.run(1)
    raised = sim.slots.limit
    assert raised > UPLOAD_SLOTS  # the first period with demand probes upwards
    assert sim.run(1) == [raised if kept else UPLOAD_SLOTS]


def test_a_raise_that_lost_is_undone_and_the_limit_holds_before_probing_again():
    """The class docstring's "undone and the limit holds for ``hold`` periods": no cut on a flat link, then a
    new probe upwards (uploads are still waiting)."""
    rates = iter([100e6, 90e6] + [90e6] * 20)
    sim = _Sim(lambda n: next(rates))
    assert sim.run(2) == [UPLOAD_SLOTS + 4, UPLOAD_SLOTS]  # raised, lost 10 %: undone
    hold = sim.slots.hold
    assert sim.run(hold) == [UPLOAD_SLOTS] * (hold - 1) + [UPLOAD_SLOTS + 4]


def test_the_limit_is_judged_once_per_period_not_on_every_write():
    now = [0.0]
    slots = AdaptiveSlots(clock=lambda: now[0], cpu=lambda: now[0] / 10)
    slots.waiting = 1
    for t in (0.1, 0.2, 0.4):
        now[0] = t
        slots.sent(1 << 20)
    assert slots.history == [] and slots.limit == UPLOAD_SLOTS
    now[0] = slots.period + 0.01
    slots.sent(1 << 20)
    assert len(slots.history) == 1 and slots.history[0][0] == UPLOAD_SLOTS


def test_after_a_cut_new_uploads_wait_until_those_running_are_below_the_new_limit():
    """A cut does not stop the uploads already running; until enough of them finished, no new one starts."""
    import threading

    slots = AdaptiveSlots(start=4)
    for _ in range(4):
        assert slots.acquire()
    slots.limit = 2  # what a cut does
    got = threading.Event()
    th = threading.Thread(target=lambda: (slots.acquire(), got.set()), daemon=True)
    th.start()
    slots.release()
    slots.release()  # 2 running, limit 2: still full
    assert not got.wait(0.3)
    slots.release()
    assert got.wait(10)
    th.join(10)
    assert slots.active == 2
