"""The sans-IO link health: RTT smoothing, loss, death after missed heartbeats, duplicate-link rule."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from wecross.peer.link import LinkHealth, keep_dialled_by


class LinkHealthTests(SynchronousTestCase):
    def test_rtt_smoothing(self) -> None:
        h = LinkHealth(0.0, dead_after=3, interval=1.0)
        seq = h.tick(1.0)
        assert seq is not None
        self.assertAlmostEqual(h.pong(seq, 1.0, 1.010) or 0, 0.010)
        self.assertAlmostEqual(h.srtt or 0, 0.010)
        self.assertAlmostEqual(h.rttvar or 0, 0.005)
        seq = h.tick(2.0)
        assert seq is not None
        h.pong(seq, 2.0, 2.030)
        self.assertAlmostEqual(h.srtt or 0, 0.875 * 0.010 + 0.125 * 0.030)

    def test_duplicate_and_unknown_pongs_ignored(self) -> None:
        h = LinkHealth(0.0, dead_after=3, interval=1.0)
        seq = h.tick(1.0)
        assert seq is not None
        h.pong(seq, 1.0, 1.01)
        self.assertIsNone(h.pong(seq, 1.0, 1.02))
        self.assertIsNone(h.pong(99, 1.0, 1.02))
        self.assertIsNone(h.pong(-1, 1.0, 1.02))
        self.assertEqual(h.pongs_received, 1)

    def test_dead_after_missed_beats(self) -> None:
        h = LinkHealth(0.0, dead_after=3, interval=1.0)
        self.assertIsNotNone(h.tick(1.0))  # silent for 1 interval
        self.assertIsNotNone(h.tick(2.0))  # 2
        self.assertIsNone(h.tick(3.0))  # 3: dead
        h = LinkHealth(0.0, dead_after=3, interval=0.1)
        self.assertIsNone(h.tick(0.1 + 0.1 + 0.1))  # float time must not make three intervals two

    def test_any_frame_keeps_alive(self) -> None:
        h = LinkHealth(0.0, dead_after=2, interval=1.0)
        for t in range(1, 20):
            h.heard(t - 0.5)
            self.assertIsNotNone(h.tick(float(t)))
        self.assertEqual(h.missed, 0)

    def test_loss(self) -> None:
        h = LinkHealth(0.0, dead_after=100, interval=1.0)
        for t in range(1, 11):
            seq = h.tick(float(t))
            assert seq is not None
            if t % 2 == 0:
                h.pong(seq, float(t), t + 0.001)
        # nine settled pings (the newest is in flight): 1,3,5,7,9 unanswered
        self.assertAlmostEqual(h.loss, 5 / 9)

    def test_keep_dialled_by_is_symmetric(self) -> None:
        self.assertEqual(keep_dialled_by("a", "b"), keep_dialled_by("b", "a"))
        self.assertEqual(keep_dialled_by("router-b", "router-a"), "router-a")

    def test_bandwidth_is_the_recent_peak_once_it_says_something(self) -> None:
        h = LinkHealth(0.0, dead_after=3, interval=1.0)
        h.received(1000)
        h.tick(1.0)
        self.assertEqual(h.bandwidth_bps, 0.0)  # 8 kbit/s shows nothing about capacity: unknown
        h.received(1_000_000)
        h.tick(2.0)
        h.received(10)
        h.tick(3.0)
        self.assertEqual(h.bandwidth_bps, 8_000_000.0)  # the peak, not the last idle interval
        self.assertEqual(h.snapshot().bandwidth_bps, 8_000_000.0)
