"""Stub plugins found with twisted.plugin, and the StubService that builds, starts and dispatches to stubs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from twisted.plugin import IPlugin
from twisted.trial.unittest import TestCase

from wecross.ipath import IPath
from wecross.stub.interfaces import IStubFactory, Result, StubError, StubSettings
from wecross.stub.loader import StubLoadError, build_stub, default_plugin_dirs, discover
from wecross.stub.service import StubService, StubStartError

_names = itertools.count()

FACTORY_MODULE = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from wecross.stub.interfaces import IStubFactory


@implementer(IPlugin, IStubFactory)
class TestFactory:
    stub_type = {stub_type!r}
    description = "made by a test"

    def build(self, settings, data_dir):
        raise ValueError("option 'endpoint' is required")


factory = TestFactory()
'''

RESOURCES: list[dict[str, Any]] = [
    {"name": "hello", "kind": "kv"},
    {"name": "asset", "kind": "asset", "initial": {"alice": 10}},
]


def settings(name: str, zone: str = "payment", stub_type: str = "embedded",
             options: dict[str, Any] | None = None) -> StubSettings:
    return StubSettings(name=name, zone=zone, type=stub_type, options=options or {}, resources=RESOURCES)


class LoaderTests(TestCase):
    def plugin_dir(self, stub_type: str, module: str | None = None) -> tuple[Path, Path]:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        path = directory / f"{module or f'test_plugin_{next(_names)}'}.py"
        path.write_text(FACTORY_MODULE.format(stub_type=stub_type))
        return directory, path

    def test_default_dir_is_the_repo_plugins_dir(self) -> None:
        [directory] = default_plugin_dirs()
        self.assertEqual(directory, Path(__file__).resolve().parent.parent / "plugins")
        self.assertTrue((directory / "embedded.py").is_file())
        self.assertFalse((directory / "__init__.py").exists())

    def test_embedded_plugin_is_discovered(self) -> None:
        factories = discover()
        self.assertIn("embedded", factories)
        factory = factories["embedded"]
        self.assertTrue(IStubFactory.providedBy(factory))
        self.assertTrue(IPlugin.providedBy(factory))
        self.assertEqual(factory.stub_type, "embedded")
        # a second discovery (now from dropin.cache) finds the same
        self.assertEqual(set(discover()), {"embedded", "evm"})

    def test_extra_directory(self) -> None:
        directory, _ = self.plugin_dir("test-chain")
        factories = discover([*default_plugin_dirs(), directory])
        self.assertEqual(set(factories), {"embedded", "evm", "test-chain"})
        # dropping the directory again forgets its plugin
        self.assertEqual(set(discover()), {"embedded", "evm"})

    def test_missing_directory_is_skipped(self) -> None:
        self.assertEqual(set(discover([*default_plugin_dirs(), Path(self.mktemp())])), {"embedded", "evm"})

    def test_unwritable_cache_still_works(self) -> None:
        directory, _ = self.plugin_dir("uncached")
        (directory / "dropin.cache").mkdir()  # neither readable nor writable as a file
        self.assertIn("uncached", discover([directory]))
        self.assertIn("uncached", discover([directory]))

    def test_duplicate_stub_type_names_both_modules(self) -> None:
        directory, path = self.plugin_dir("embedded")
        with self.assertRaises(StubLoadError) as caught:
            discover([*default_plugin_dirs(), directory])
        message = str(caught.exception)
        self.assertIn("'embedded' is provided twice", message)
        self.assertIn(str(path), message)
        self.assertIn(str(default_plugin_dirs()[0] / "embedded.py"), message)

    def test_same_module_name_in_two_directories(self) -> None:
        directory, path = self.plugin_dir("other", module="embedded")
        with self.assertRaises(StubLoadError) as caught:
            discover([*default_plugin_dirs(), directory])
        self.assertIn("in both", str(caught.exception))
        self.assertIn(str(path), str(caught.exception))

    def test_unknown_type_lists_known_types(self) -> None:
        with self.assertRaises(StubLoadError) as caught:
            build_stub(discover(), settings("bank-a", stub_type="fabric"), Path(self.mktemp()))
        self.assertIn("unknown type 'fabric'", str(caught.exception))
        self.assertIn("known types: embedded", str(caught.exception))

    def test_build_errors_name_the_stub(self) -> None:
        directory, _ = self.plugin_dir("needs-endpoint")
        factories = discover([directory])
        with self.assertRaises(StubLoadError) as caught:
            build_stub(factories, settings("bank-a", stub_type="needs-endpoint"), Path(self.mktemp()))
        self.assertIn("payment.bank-a", str(caught.exception))
        self.assertIn("option 'endpoint' is required", str(caught.exception))


class ServiceTests(TestCase):
    async def start_service(self, stubs: list[StubSettings], data_dir: Path | None = None) -> StubService:
        service = StubService(stubs, data_dir or Path(self.mktemp()))
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        return service

    async def fails(self, code: str, d: Any) -> StubError:
        with self.assertRaises(StubError) as caught:
            await d
        self.assertEqual(caught.exception.code, code, caught.exception.message)
        return caught.exception

    async def test_loads_and_starts_embedded_stubs(self) -> None:
        data_dir = Path(self.mktemp())
        service = await self.start_service([settings("bank-a"), settings("bank-b"), settings("x", zone="z")],
                                           data_dir)
        self.assertEqual(set(service.stubs()), {"payment.bank-a", "payment.bank-b", "z.x"})
        for key in service.stubs():
            self.assertTrue((data_dir / key / "chain.sqlite").is_file())
        self.assertTrue(service.running)
        paths = [str(path) for path, _ in service.local_resources()]
        self.assertEqual(paths, ["payment.bank-a.asset", "payment.bank-a.hello", "payment.bank-b.asset",
                                 "payment.bank-b.hello", "z.x.asset", "z.x.hello"])
        info = dict(service.local_resources())[IPath.parse("z.x.asset")]
        self.assertEqual(info.kind, "asset")
        states = await service.chain_states()
        self.assertEqual(set(states), set(service.stubs()))
        self.assertEqual(states["payment.bank-a"].chain_type, "embedded")
        self.assertEqual(states["payment.bank-a"].height, 0)
        self.assertIsNotNone(service.resolve(IPath.parse("payment.bank-a.hello")))
        self.assertIsNone(service.resolve(IPath.parse("payment.bank-a.nope")))
        self.assertIsNone(service.resolve(IPath.parse("payment.nope.hello")))

    async def test_invoke_dispatches_every_operation(self) -> None:
        service = await self.start_service([settings("bank-a")])
        hello = IPath.parse("payment.bank-a.hello")
        asset = IPath.parse("payment.bank-a.asset")
        written: Result = await service.invoke(hello, "sendTransaction", "set", ["k", "v"], "alice")
        self.assertEqual(written.block_number, 1)
        self.assertEqual((await service.invoke(hello, "call", "get", ["k"], "bob")).output, "v")
        self.assertEqual((await service.invoke(hello, "setData", "", ["k", "w"], "bob")).block_number, 2)
        self.assertEqual((await service.invoke(hello, "getData", "", ["k"], "bob")).output, "w")
        self.assertEqual((await service.invoke(asset, "call", "balanceOf", ("alice",), "x")).output, 10)
        moved = await service.invoke(asset, "sendTransaction", "transfer", ["bob", 4], "alice")
        self.assertEqual(moved.output, 6)
        self.assertEqual((await service.chain_states())["payment.bank-a"].height, 3)

    async def test_invoke_errors(self) -> None:
        service = await self.start_service([settings("bank-a")])
        hello = IPath.parse("payment.bank-a.hello")
        error = await self.fails("unknown_resource", service.invoke(IPath.parse("payment.bank-a.nope"), "call",
                                                                    "get", ["k"], "x"))
        self.assertIn("payment.bank-a.nope", error.message)
        error = await self.fails("unknown_resource", service.invoke(IPath.parse("payment.other.hello"), "call",
                                                                    "get", ["k"], "x"))
        self.assertIn("no chain payment.other", error.message)
        error = await self.fails("bad_request", service.invoke(hello, "delete", "", [], "x"))
        self.assertIn("call, sendTransaction, getData, setData", error.message)
        for op, method, args in [
            ("getData", "", []),
            ("getData", "", ["a", "b"]),
            ("getData", "", [5]),
            ("setData", "", ["k"]),
            ("setData", "", [1, "v"]),
            ("call", "", ["k"]),
            ("call", "get", "k"),
            ("sendTransaction", None, ["k", "v"]),
        ]:
            with self.subTest(op=op, args=args):
                await self.fails("bad_args", service.invoke(hello, op, method, args, "x"))  # type: ignore[arg-type]
        await self.fails("bad_args", service.invoke(hello, "call", "get", ["k"], None))  # type: ignore[arg-type]
        await self.fails("unknown_method", service.invoke(hello, "call", "nope", [], "x"))
        await self.fails("insufficient_funds", service.invoke(IPath.parse("payment.bank-a.asset"),
                                                              "sendTransaction", "transfer", ["b", 11], "alice"))

    async def test_internal_errors_are_wrapped(self) -> None:
        service = await self.start_service([settings("bank-a")])
        path = IPath.parse("payment.bank-a.hello")
        resource = service.resolve(path)

        def broken(*args: Any) -> Any:
            raise ZeroDivisionError("bug")

        resource.call = broken  # type: ignore[union-attr]
        error = await self.fails("internal", service.invoke(path, "call", "get", ["k"], "x"))
        self.assertNotIn("bug", error.message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_restart_reloads_chains(self) -> None:
        data_dir = Path(self.mktemp())
        first = StubService([settings("bank-a")], data_dir)
        first.startService()
        await first.ready
        await first.invoke(IPath.parse("payment.bank-a.hello"), "sendTransaction", "set", ["k", 1], "x")
        before = await first.chain_states()
        await first.stopService()
        second = await self.start_service([settings("bank-a")], data_dir)
        self.assertEqual(await second.chain_states(), before)

    async def assert_not_ready(self, service: StubService, *fragments: str) -> None:
        service.startService()
        self.addCleanup(service.stopService)
        with self.assertRaises(StubStartError) as caught:
            await service.ready
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    async def test_unknown_stub_type_fails_ready(self) -> None:
        service = StubService([settings("bank-a", stub_type="fabric")], Path(self.mktemp()))
        await self.assert_not_ready(service, "payment.bank-a", "unknown type 'fabric'", "known types: embedded")

    async def test_bad_options_fail_ready(self) -> None:
        service = StubService([settings("bank-a", options={"speed": 1})], Path(self.mktemp()))
        await self.assert_not_ready(service, "payment.bank-a", "speed")

    async def test_load_reports_config_errors_early(self) -> None:
        service = StubService([settings("bank-a"), settings("bank-a")], Path(self.mktemp()))
        self.assertRaises(StubLoadError, service.load)

    async def test_failing_start_names_the_stub(self) -> None:
        data_dir = Path(self.mktemp())
        (data_dir / "payment.bank-b").mkdir(parents=True)
        (data_dir / "payment.bank-b" / "chain.sqlite").write_bytes(b"garbage" * 1000)
        service = StubService([settings("bank-a"), settings("bank-b")], data_dir)
        await self.assert_not_ready(service, "stub payment.bank-b (embedded) failed to start",
                                    str(data_dir / "payment.bank-b" / "chain.sqlite"))
        # the stub that did start is stopped with the service
        await service.stopService()

    async def test_extra_plugin_dirs(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        (directory / f"test_plugin_{next(_names)}.py").write_text(FACTORY_MODULE.format(stub_type="remote"))
        service = StubService([settings("bank-a", stub_type="remote")], Path(self.mktemp()), [directory])
        await self.assert_not_ready(service, "payment.bank-a", "option 'endpoint' is required")
