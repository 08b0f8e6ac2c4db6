"""Config validation: every mistake names the file, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from wecross.config import ConfigError, load_settings, parse_address

GOOD = """
[router]
id = "router-a"
zones = ["payment"]

[p2p]
listen = "127.0.0.1:25500"
ca = "ca.crt"
cert = "a.pem"
key = "a.key"
peers = ["127.0.0.1:25501", { address = "127.0.0.1:25502", id = "router-c" }]

[rest]
listen = "127.0.0.1:8250"

[timing]
heartbeat_interval = 1

[[stubs]]
name = "bank-a"
type = "embedded"

[[stubs.resources]]
name = "hello"
kind = "kv"
"""


class ConfigTests(SynchronousTestCase):
    def write(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.mkdir()
        file = path / "router.toml"
        file.write_text(text)
        return file

    def error(self, text: str) -> ConfigError:
        return self.assertRaises(ConfigError, load_settings, self.write(text), check_files=False)

    def test_good(self) -> None:
        file = self.write(GOOD)
        s = load_settings(file, check_files=False)
        self.assertEqual(s.router_id, "router-a")
        self.assertEqual(s.zones, ("payment",))
        self.assertEqual(len(s.peers), 2)
        self.assertIsNone(s.peers[0].id)
        self.assertEqual(s.peers[1].id, "router-c")
        self.assertEqual(str(s.peers[1].address), "127.0.0.1:25502")
        self.assertEqual(s.timing.heartbeat_interval, 1.0)
        self.assertEqual(s.timing.dead_after, 3)
        self.assertEqual(s.stubs[0].zone, "payment")  # defaults to the router's first zone
        # relative paths are resolved against the config file, not the current directory
        self.assertEqual(s.p2p_tls.ca, file.resolve().parent / "ca.crt")
        self.assertEqual(s.data_dir, file.resolve().parent / "data" / "router-a")

    def test_missing_file_reference(self) -> None:
        err = self.assertRaises(ConfigError, load_settings, self.write(GOOD))
        self.assertIn("p2p.ca", str(err))
        self.assertIn("does not exist", str(err))

    def test_not_toml(self) -> None:
        err = self.error("[router\nid=1")
        self.assertIn("router.toml", str(err))
        self.assertIn("not valid TOML", str(err))

    def test_unreadable(self) -> None:
        err = self.assertRaises(ConfigError, load_settings, "/nonexistent/router.toml")
        self.assertIn("cannot read", str(err))

    def test_wrong_type_names_key(self) -> None:
        err = self.error(GOOD.replace("heartbeat_interval = 1", 'heartbeat_interval = "fast"'))
        self.assertEqual(err.key, "timing.heartbeat_interval")
        self.assertIn("expected a number", err.message)

    def test_boolean_is_not_a_number(self) -> None:
        err = self.error(GOOD.replace("heartbeat_interval = 1", "heartbeat_interval = true"))
        self.assertIn("boolean", err.message)

    def test_out_of_range(self) -> None:
        err = self.error(GOOD.replace("heartbeat_interval = 1", "dead_after = 0"))
        self.assertEqual(err.key, "timing.dead_after")

    def test_unknown_key(self) -> None:
        err = self.error(GOOD.replace("heartbeat_interval = 1", "heartbeat = 1"))
        self.assertEqual(err.key, "timing.heartbeat")
        self.assertIn("unknown key", err.message)

    def test_bad_router_id(self) -> None:
        err = self.error(GOOD.replace('id = "router-a"', 'id = "Router_A"'))
        self.assertEqual(err.key, "router.id")

    def test_bad_peer_address(self) -> None:
        err = self.error(GOOD.replace('"127.0.0.1:25501"', '"nowhere"'))
        self.assertEqual(err.key, "p2p.peers[0].address")

    def test_self_peer(self) -> None:
        err = self.error(GOOD.replace('id = "router-c"', 'id = "router-a"'))
        self.assertIn("itself", err.message)

    def test_stub_zone_not_ours(self) -> None:
        err = self.error(GOOD.replace('type = "embedded"', 'type = "embedded"\nzone = "other"'))
        self.assertEqual(err.key, "stubs[0].zone")

    def test_duplicate_resource(self) -> None:
        err = self.error(GOOD + '\n[[stubs.resources]]\nname = "hello"\nkind = "kv"\n')
        self.assertIn("defined twice", err.message)

    def test_required_section(self) -> None:
        err = self.error('[router]\nid = "a"\n')
        self.assertEqual(err.key, "p2p")

    def test_rest_client_cert_needs_tls(self) -> None:
        err = self.error(GOOD.replace('listen = "127.0.0.1:8250"',
                                      'listen = "127.0.0.1:8250"\nrequire_client_cert = true'))
        self.assertEqual(err.key, "rest.require_client_cert")

    def test_parse_address(self) -> None:
        self.assertEqual(parse_address("[::1]:80").host, "::1")
        self.assertRaises(ValueError, parse_address, "host:99999")
        self.assertRaises(ValueError, parse_address, ":80")


class CheckConfigAcl(SynchronousTestCase):
    """``wecross check-config`` reads the ACL file as the daemon does: every mistake reported with its key."""

    def run_check(self, acl: str) -> tuple[int, str, str]:
        import contextlib
        import io

        from wecross.cli import main

        work = Path(self.mktemp())
        work.mkdir()
        (work / "acl.toml").write_text(acl)
        (work / "router.toml").write_text(GOOD + '\n[governance]\nacl_file = "acl.toml"\n')
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["check-config", "--no-files", str(work / "router.toml")])
        return status, out.getvalue(), err.getvalue()

    def test_a_valid_acl_is_summarised(self) -> None:
        status, out, _ = self.run_check('[acl_settings]\ndefault = "deny"\n\n[[acl]]\nwho = "*"\n'
                                        'resources = ["*"]\ninterfaces = ["read"]\neffect = "allow"\n')
        self.assertEqual(status, 0)
        self.assertIn("1 ACL rules, default deny", out)

    def test_every_mistake_of_an_acl_is_reported(self) -> None:
        status, _, err = self.run_check('[[acl]]\nwho = "nobody-knows:x"\nresources = ["*"]\n'
                                        'interfaces = ["fly"]\neffect = "maybe"\n')
        self.assertEqual(status, 1)
        for key in ("acl[0].who", "acl[0].interfaces", "acl[0].effect"):
            self.assertIn(key, err)
