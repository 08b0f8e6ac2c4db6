"""Topology files: the samples in conf/topologies expand into configs that pass validation."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from wecross.config import ConfigError, load_settings
from wecross.topology import load_topology, write_configs

SAMPLES = Path(__file__).resolve().parent.parent / "conf" / "topologies"


class TopologyTests(SynchronousTestCase):
    def test_every_sample_expands_into_valid_configs(self) -> None:
        samples = sorted(SAMPLES.glob("*.toml"))
        self.assertGreaterEqual(len(samples), 4)
        for sample in samples:
            topology = load_topology(sample)
            out = Path(self.mktemp())
            paths = write_configs(topology, out)
            self.assertEqual(len(paths), len(topology.routers))
            for path in paths:
                settings = load_settings(path)  # certificates exist in certs/ for every sample router
                spec = topology.routers[settings.router_id]
                self.assertEqual(settings.zones, spec.zones)
                self.assertEqual(len(settings.peers), sum(1 for u, _ in topology.links if u == settings.router_id))

    def test_two_borders_sample(self) -> None:
        topology = load_topology(SAMPLES / "two-zones-two-borders.toml")
        borders = [rid for rid, spec in topology.routers.items() if len(spec.zones) == 2]
        self.assertEqual(borders, ["router-c", "router-d"])
        self.assertEqual(topology.neighbours("router-e"), ["router-c", "router-d", "router-f"])

    def write(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.write_text(text)
        return path

    def test_errors_name_the_key(self) -> None:
        cases = {
            '[routers.A]\nzones = ["z"]\n': "routers.A",
            '[routers.a]\nzones = []\n': "routers.a.zones",
            '[routers.a]\nzones = ["z"]\n[[links]]\nbetween = ["a", "b"]\n': "links[0].between",
            '[routers.a]\nzones = ["z"]\ncolour = 1\n': "routers.a.colour",
            '[routers.a]\nzones = ["z"]\n[routers.b]\nzones = ["z"]\n[[links]]\nbetween = ["a", "b"]\n'
            '[[links]]\nbetween = ["b", "a"]\n': "links[1].between",
        }
        for text, key in cases.items():
            err = self.assertRaises(ConfigError, load_topology, self.write(text))
            self.assertEqual(err.key, key, text)
