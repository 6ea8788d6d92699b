"""The result types tell the truth: what the Workspace's methods say they return is what they do.

The REST API will publish the results of the Workspace's methods (the services behind them)
as JSON Schema, made from their annotations. Three checks keep those annotations honest:

- every public method and property has a return annotation that resolves, in the namespace
  its module sees at type-checking time (the names ``workspace.py`` and the services import
  under ``TYPE_CHECKING`` are read from their sources, not listed here), and none is an
  untyped ``dict[str, Any]``: a signed or standard document says so by its alias
  (:data:`disgorge.signing.SignedDocument`, :data:`disgorge.interop.croissant.CroissantDocument`);
- pydantic makes a JSON Schema of every one of them that is data (only handles such as the
  context, the vault or a key are not);
- on two real small workspaces (a sender and a recipient: sources, consent, ingest, faces,
  datasets, a model, runs, sharing, erasure to the recipient and back, the audit log), every
  result is checked against its annotation: pydantic's strict validation of each value, and
  exactly the keys each TypedDict declares, nested ones too (pydantic ignores extra keys).
  A mismatch names the method and the key path.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import functools
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, Union

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypeAliasType, is_typeddict

from conftest import sha, tiny_photos
from disgorge import Workspace, jobs
from disgorge.context import Context
from disgorge.samples import synthetic_photo
from disgorge.vault import Vault
from disgorge.vision.hash_cache import HashCache


# -- the annotations, resolved as a type checker sees them -------------------------------------
def _type_checking_names(module: types.ModuleType) -> dict[str, Any]:
    """The names ``module`` imports under ``if TYPE_CHECKING:`` (read from its source)."""
    names: dict[str, Any] = {}
    source = inspect.getsource(module)
    for node in ast.walk(ast.parse(source)):
        test = node.test if isinstance(node, ast.If) else None
        if not (isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                target = "." * stmt.level + (stmt.module or "")
                imported = importlib.import_module(target, module.__package__)
                for alias in stmt.names:
                    value = getattr(imported, alias.name, None)
                    if value is None:  # a submodule not imported yet
                        value = importlib.import_module(f"{imported.__name__}.{alias.name}")
                    names[alias.asname or alias.name] = value
            elif isinstance(stmt, ast.Import):  # ``import a.b`` binds ``a``; ``import a.b as c``, ``c``
                for alias in stmt.names:
                    bound = alias.name if alias.asname else alias.name.partition(".")[0]
                    importlib.import_module(alias.name)
                    names[alias.asname or bound] = importlib.import_module(bound)
    return names


@functools.cache
def _namespace(module_name: str) -> dict[str, Any]:
    module = sys.modules[module_name]
    return {**vars(module), **_type_checking_names(module)}


def _hints(obj: Any) -> dict[str, Any]:
    """``get_type_hints`` in the namespace of the module that defines ``obj`` (a function, a
    TypedDict, a dataclass), with its TYPE_CHECKING names; ``Required``/``NotRequired`` kept."""
    target = inspect.unwrap(obj) if callable(obj) and not isinstance(obj, type) else obj
    return typing.get_type_hints(obj, globalns=_namespace(target.__module__), include_extras=True)


def _public_members() -> dict[str, Callable[..., Any]]:
    """Every public method and property of Workspace: name -> the function behind it."""
    members: dict[str, Callable[..., Any]] = {}
    for name, attr in vars(Workspace).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            assert attr.fget is not None
            members[name] = attr.fget
        elif isinstance(attr, classmethod | staticmethod):
            members[name] = attr.__func__
        elif callable(attr):
            members[name] = attr
    return members


MEMBERS = _public_members()


def _return_type(name: str) -> Any:
    return _hints(MEMBERS[name])["return"]


#: what a method may return that is not data (and so has no JSON Schema): handles to work
#: with in Python. Context managers (``run``, ``transaction``) are annotated ``Iterator[...]``.
HANDLES = (Context, Vault, HashCache, Ed25519PublicKey, Workspace)


def _is_handle(t: Any) -> bool:
    return t in HANDLES or typing.get_origin(t) is collections.abc.Iterator


def _untyped(t: Any) -> bool:
    """An annotation that says nothing about the keys or items: ``Any``, ``object``, a bare
    ``dict``/``Mapping``, ``dict[str, Any]``, or those inside a list or a union."""
    if isinstance(t, TypeAliasType):  # a named document: its schema is published elsewhere
        return False
    if t in (Any, object, dict, collections.abc.Mapping, list):
        return True
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (dict, collections.abc.Mapping):
        return args[1] in (Any, object)
    if origin in (list, tuple, Union, types.UnionType, collections.abc.Sequence):
        return any(_untyped(a) for a in args if a is not Ellipsis)
    return False


def test_every_public_method_has_a_return_type_that_resolves() -> None:
    missing, broken = [], {}
    for name, function in sorted(MEMBERS.items()):
        try:
            hints = _hints(function)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with its method
            broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        if "return" not in hints:
            missing.append(name)
    assert not broken, f"annotations that do not resolve: {broken}"
    assert not missing, f"methods without a return annotation: {missing}"
    assert len(MEMBERS) > 50  # the facade's whole surface was found, not an empty class


def test_no_method_returns_an_untyped_dict() -> None:
    untyped = {name: _return_type(name) for name in MEMBERS if _untyped(_return_type(name))}
    assert not untyped, f"give these results a TypedDict (or a document alias): {untyped}"


def test_every_data_result_has_a_json_schema() -> None:
    failed = {}
    for name in sorted(MEMBERS):
        t = _return_type(name)
        if _is_handle(t):
            continue
        try:
            TypeAdapter(t).json_schema()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with its method
            failed[name] = f"{t!r}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    assert not failed, f"results pydantic cannot publish as JSON Schema: {failed}"


def test_optional_keys_are_optional_in_the_schema() -> None:
    """``NotRequired`` survives ``from __future__ import annotations`` into the schema (on
    Python 3.11 the TypedDict's own ``__required_keys__`` gets it wrong; pydantic does not)."""
    schema = TypeAdapter(_return_type("dataset")).json_schema()
    assert "member_sha256" in schema["properties"] and "member_sha256" not in schema["required"]
    assert "name" in schema["required"]


# -- checking a value against its annotation ---------------------------------------------------
@functools.cache
def _adapter(t: Any) -> TypeAdapter[Any]:
    return TypeAdapter(t)


def _typeddict_keys(td: Any) -> tuple[dict[str, Any], set[str]]:
    """A TypedDict's fields (name -> type) and its required keys, from its annotations."""
    fields, required = {}, set()
    for key, hint in _hints(td).items():
        wrapper = typing.get_origin(hint)
        if wrapper in (NotRequired, Required):
            hint = typing.get_args(hint)[0]
        if wrapper is Required or (wrapper is not NotRequired and td.__total__):
            required.add(key)
        fields[key] = hint
    return fields, required


def _mismatches(t: Any, value: Any, path: str) -> list[str]:
    """Where ``value`` does not match ``t``: each as "PATH: what"; empty when it matches."""
    if isinstance(t, TypeAliasType):
        t = t.__value__
    if t is Any:
        return []
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (Union, types.UnionType):
        tries = [_mismatches(arm, value, path) for arm in args]
        if any(not found for found in tries):
            return []
        return [f"{path}: {type(value).__name__} {value!r:.80} matches none of {t}", *tries[0]]
    if is_typeddict(t):
        if not isinstance(value, dict):
            return [f"{path}: expected a dict ({t.__name__}), got {type(value).__name__}"]
        fields, required = _typeddict_keys(t)
        found = [f"{path}: key {k!r} not declared in {t.__name__}" for k in sorted(set(value) - set(fields))]
        found += [
            f"{path}: required key {k!r} of {t.__name__} missing" for k in sorted(required - set(value))
        ]
        for key in sorted(set(value) & set(fields)):
            found += _mismatches(fields[key], value[key], f"{path}[{key!r}]")
        return found
    if dataclasses.is_dataclass(t) and isinstance(t, type):  # pydantic takes an instance as is
        if not isinstance(value, t):
            return [f"{path}: expected {t.__name__}, got {type(value).__name__}"]
        hints = _hints(t)
        return [
            m
            for f in dataclasses.fields(t)
            for m in _mismatches(hints[f.name], getattr(value, f.name), f"{path}.{f.name}")
        ]
    if origin in (list, collections.abc.Sequence) and args:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [m for i, item in enumerate(value) for m in _mismatches(args[0], item, f"{path}[{i}]")]
    if origin in (dict, collections.abc.Mapping) and args:
        if not isinstance(value, dict):
            return [f"{path}: expected a dict, got {type(value).__name__}"]
        found = []
        for key, item in value.items():
            found += _mismatches(args[0], key, f"{path} key {key!r}")
            found += _mismatches(args[1], item, f"{path}[{key!r}]")
        return found
    if origin is tuple and args:
        if not isinstance(value, tuple):
            return [f"{path}: expected a tuple, got {type(value).__name__}"]
        if len(args) == 2 and args[1] is Ellipsis:
            return [m for i, item in enumerate(value) for m in _mismatches(args[0], item, f"{path}[{i}]")]
        if len(args) != len(value):
            return [f"{path}: expected {len(args)} items, got {len(value)}"]
        return [
            m
            for i, (a, item) in enumerate(zip(args, value, strict=True))
            for m in _mismatches(a, item, f"{path}[{i}]")
        ]
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    try:  # a leaf: str, int, float, bool, None, bytes, Path...
        _adapter(t).validate_python(value, strict=True)
    except ValidationError as exc:
        return [f"{path}: {type(value).__name__} {value!r:.80} is not {t}: {exc.errors()[0]['msg']}"]
    return []


def _check(method: str, value: Any) -> list[str]:
    """``value`` against ``method``'s return annotation: the structure (exact keys, nested
    TypedDicts, dataclass fields) and pydantic's strict validation of the whole value."""
    t = _return_type(method)
    found = [f"{method}: {m}" for m in _mismatches(t, value, "result")]
    try:
        _adapter(t).validate_python(value, strict=True)
    except ValidationError as exc:
        found += [
            f"{method}: result{''.join(f'[{p!r}]' for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
    return found


def test_the_checker_names_the_method_and_the_key_path() -> None:
    """A mismatch is reported, with where it is: the check itself is not vacuous."""
    purpose = {"from": "ai_training", "to": "ai_training"}
    diff = {
        "from": "f@1.0.0",
        "to": "f@2.0.0",
        "added": [],
        "removed": ["ab"],
        "unchanged": 3,
        "purpose": purpose,
    }
    assert _check("dataset_diff", diff) == []
    extra = {**diff, "purpose": {**purpose, "why": "x"}}
    assert "dataset_diff: result['purpose']: key 'why' not declared in PurposeChange" in _check(
        "dataset_diff", extra
    )
    wrong = {**diff, "removed": [1]}
    assert any(
        m.startswith("dataset_diff: result['removed'][0]: int 1 is not")
        for m in _check("dataset_diff", wrong)
    )
    missing = {k: v for k, v in diff.items() if k != "unchanged"}
    assert "dataset_diff: result: required key 'unchanged' of DatasetDiff missing" in _check(
        "dataset_diff", missing
    )
    # an optional key may be absent; present, it is checked like any other
    view = {
        **{
            "name": "f",
            "version": "1.0.0",
            "id": "a",
            "purpose": "ai_training",
            "built_at": "2020-01-01T00:00:00Z",
        },
        **{"members": 1, "excluded": 0, "excluded_by_rule": {}, "merkle_root": "r", "selector": {}},
        **{"state": "active", "run": None, "versions": ["1.0.0"]},
    }
    assert _check("dataset", view) == []
    assert any(
        m.startswith("dataset: result['member_sha256'][0]: int")
        for m in _check("dataset", {**view, "member_sha256": [1]})
    )


# -- two real workspaces, every result checked -------------------------------------------------
PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
PER_PERSON = 3
REASON = "GDPR Art. 17 request 2026-001"
POLICY = b"we train face recognition on your photos and share them with partners, with your consent"

#: methods whose results are data but that the scenario does not call, and why
NOT_EXERCISED: dict[str, str] = {}

#: every method and property whose result is data (all but the handles and ``close``)
DATA_METHODS = sorted(
    n for n in MEMBERS if not _is_handle(_return_type(n)) and _return_type(n) is not type(None)
)


class Recorder:
    """Calls a Workspace method (or reads a property) and keeps its result for the checks."""

    def __init__(self) -> None:
        self.results: dict[str, list[Any]] = {}

    def __call__(self, ws: Workspace, method: str, *args: Any, **kwargs: Any) -> Any:
        if isinstance(vars(Workspace)[method], property):
            result = getattr(ws, method)
        else:
            result = getattr(ws, method)(*args, **kwargs)
        self.results.setdefault(method, []).append(result)
        return result


def _photos(folder: Path) -> dict[str, bytes]:
    """Drawn portraits dlib finds faces in (PERSON/i.jpg): file name -> bytes."""
    photos = {}
    for p, person in enumerate(PEOPLE):
        (folder / person).mkdir(parents=True)
        for i in range(PER_PERSON):
            photos[f"{person}/{i}.jpg"] = synthetic_photo(p, i, size=160)
            (folder / person / f"{i}.jpg").write_bytes(photos[f"{person}/{i}.jpg"])
    return photos


def _scenario(call: Recorder, root: Path) -> None:
    """A sender ("app") and a recipient ("vendor"): everything a user does, once."""
    photos = _photos(root / "photos")
    ada, alan, grace = PEOPLE
    first = sha(photos[f"{ada}/0.jpg"])
    with (
        Workspace.init(root / "app", actor="tester", at="2020-01-01") as app,
        Workspace.init(root / "vendor", actor="tester", at="2020-01-01") as vendor,
    ):
        for prop in ("root", "workspace_id", "face_index_path"):
            call(app, prop)
        call(app, "public_key_pem")
        call(app, "sign", b"data")
        call(app, "migrate")
        call(app, "add_source", "app", at="2020-01-01")
        allows = ["ai_training", "ai_inference", "biometric_processing", "third_party_sharing"]
        call(
            app,
            "add_policy",
            "app",
            "2020",
            text=POLICY,
            effective_from="2020-01-01",
            allows=allows,
            at="2020-01-01",
        )
        call(app, "sources")
        call(app, "source", "app")
        consent = root / "consent.csv"
        consent.write_text(
            "subject,purpose,decision,at\n"
            + "".join(f"{p},{u},granted,2020-01-01\n" for p in PEOPLE for u in allows[2:])
        )
        call(app, "import_consent", consent, at="2020-01-01")
        call(app, "ingest", root / "photos", source="app", subject_from="dirname", at="2020-02-01", workers=1)
        call(app, "subject_ref", ada)
        call(app, "subject", ada)
        call(app, "asset", first)
        call(app, "read_asset", first)
        call(app, "read_asset_audited", first)
        call(app, "consent_check", ada, "ai_training", at="2020-02-02")
        call(app, "analyze", workers=1, at="2020-02-03")
        call(app, "find", photos[f"{ada}/1.jpg"], by="copy")
        call(app, "find", photos[f"{ada}/1.jpg"], by="face")

        # datasets, a model, runs, lineage, violations
        call(app, "build_dataset", "faces", purpose="ai_training", at="2020-03-01")
        call(app, "build_dataset", "faces", purpose="ai_training", subjects=[ada, alan], at="2020-03-02")
        call(app, "dataset", "faces@1.0.0")
        call(app, "dataset", "faces", members=True)
        call(app, "dataset_diff", "faces@1.0.0", "faces@2.0.0")
        call(app, "export_croissant", "faces@1.0.0", root / "faces.croissant.json")
        call(app, "train_model", "faceid", dataset="faces@1.0.0", shards=2, slices=2, at="2020-04-01")
        call(app, "models")
        call(app, "model", "faceid")
        call(app, "predict", "faceid", photos[f"{grace}/1.jpg"])
        call(app, "model_audit", "faceid", forgotten=[grace])
        call(app, "unlearn_model", "faceid", subjects=[grace], at="2020-04-02")
        call(
            app,
            "record_run",
            "vendor-mining",
            purpose="data_mining",  # the policy does not allow it: a violation, under override
            inputs=["faces@1.0.0"],
            outputs=[{"kind": "model", "name": "vendor-miner"}],
            at="2020-05-01",
            override=("legal", "backfilled from the vendor contract"),
        )
        call(app, "lineage", f"subject:{ada}")
        call(app, "violations")
        call(app, "violations", as_of="2020-04-15")

        # sharing with the vendor, and a legacy transfer to it
        call(app, "add_peer", "recipient", "vendor", public_key=vendor.public_key_pem(), agreement="DSA-1")
        call(vendor, "add_peer", "sender", "app", public_key=app.public_key_pem(), at="2020-01-01")
        call(app, "peers", "recipient")
        purposes = ["ai_training", "biometric_processing"]
        call(app, "share", "faces@1.0.0", to="vendor", purposes=purposes, out=root / "b.zip", at="2020-06-01")
        call(vendor, "receive_bundle", root / "b.zip", at="2020-06-02")
        call(vendor, "add_source", "old-exports", at="2020-01-01")
        vendor.ingest(
            tiny_photos(root / "legacy", ["someone"], 2), source="old-exports", subject_from="dirname"
        )
        call(vendor, "receive_legacy", "app", source="old-exports", at="2020-06-03")
        call(app, "transfers")
        call(vendor, "transfers")

        # erasure, reaching the vendor by hand-carried documents
        call(app, "erasure_plan", "subject", alan)
        resting = call(app, "erase", "subject", alan, reason=REASON, wait=0)
        assert resting["state"] == "awaiting_recipients", resting["state"]
        call(app, "erasures")
        call(app, "erasure", resting["id"])
        call(app, "interrupted_erasures")
        request = call(app, "erasure_request_document", resting["id"], "vendor")
        answer = call(vendor, "receive_erasure_request", request)
        call(app, "erasure_ack", answer)
        call(app, "erasure_certificate", resting["id"])
        call(app, "verify_erasure", resting["id"])
        [received] = vendor.erasures()  # the vendor's own erasure of what the request named
        call(vendor, "erasure_certificate", received["id"])
        # a recipient that never answers: closed by hand, then the erasure resumed to its end
        silent = call(app, "erase", "asset", first, reason=REASON, wait=0)
        call(app, "erasure_close_recipient", silent["id"], "vendor", reason="no answer in 30 days")
        call(app, "erasure_resume", silent["id"], wait=0)
        # planned, then cancelled; planned, then approved
        one = sha(photos[f"{grace}/0.jpg"])
        planned = call(app, "erase", "asset", one, reason=REASON, execute=False)
        call(app, "erasure_cancel", planned["id"], reason="asked by mistake")
        planned = call(app, "erase", "asset", one, reason=REASON, execute=False)
        call(app, "erasure_approve", planned["id"], wait=0)
        denied = call(app, "erase", "asset", sha(photos[f"{grace}/1.jpg"]), reason=REASON, execute=False)
        call(app, "erasure_deny", denied["id"], reason="not covered by the request")

        # data-subject requests as cases: an objection, an erasure case (planned, then cancelled)
        objection = call(
            app,
            "open_case",
            "objection",
            ada,
            received_at="2020-06-10",
            channel="email",
            purpose="ai_training",
            at="2020-06-11",
        )
        case = call(
            app, "open_case", "erasure", ada, received_at="2020-06-10", channel="portal", at="2020-06-11"
        )
        call(app, "extend_case", case["id"], by="2m", reason="several systems to search", at="2020-06-12")
        call(app, "verify_case_identity", case["id"], how="reply from the account e-mail", at="2020-06-12")
        started = call(app, "erase_case", case["id"], reason=REASON, execute=False, at="2020-06-12")
        app.erasure_cancel(started["erasure"]["id"], reason="kept for the scenario")
        access = call(
            app, "open_case", "access", alan, received_at="2020-06-10", channel="post", at="2020-06-11"
        )
        call(app, "verify_case_identity", access["id"], how="copy of an ID document", at="2020-06-12")
        call(app, "export_case", access["id"], root / "alan-export.zip", at="2020-06-12")
        call(app, "close_case", objection["id"], outcome="ai_training denied from receipt", at="2020-06-13")
        call(app, "case", objection["id"], at="2020-06-14")
        call(app, "cases", at="2020-06-14")
        call(app, "cases", overdue=True, at="2021-01-01")

        # legal holds (what they do to erasures: tests/test_holds.py)
        hold = call(app, "add_hold", "dataset", "faces", reason="litigation 2026-CV-0142", at="2020-06-15")
        call(app, "holds")
        call(app, "release_hold", hold["id"], reason="the matter is closed", at="2020-06-16")
        call(app, "finish_released")  # nothing withheld here: what every command runs on opening
        call(app, "restore_check", dry_run=True)  # nothing to replay here (tests/test_restore.py)

        # retention schedules (tests/test_retention.py): a dry run at the sender, a run at the
        # recipient (its legacy photos, ingested now, are past a 1-day rule in 2099)
        call(app, "set_retention", "dataset", "faces", days=30, at="2020-06-17")
        call(app, "retention_rules")
        call(app, "retention_due", at="2020-06-17")
        call(app, "run_retention", dry_run=True, at="2020-06-17")
        call(app, "clear_retention", "dataset", "faces", at="2020-06-17")
        call(vendor, "set_retention", "source", "old-exports", days=1)
        assert call(vendor, "run_retention", at="2099-01-01", wait=0)["erasure"] is not None

        # principals, tokens, settings and jobs (the REST API's)
        call(app, "add_principal", "officer", role="privacy_officer")
        call(app, "add_principal", "pipeline", role="ml_engineer", kind="service")
        call(app, "set_password", "officer", "correct horse battery")  # the web UI's login
        assert call(app, "check_password", "officer", "correct horse battery") is not None
        assert call(app, "check_password", "officer", "wrong horse battery") is None
        call(app, "principals")
        call(app, "create_token", "officer", expires="1d")
        token = call(app, "create_token", "pipeline", expires="never")
        call(app, "tokens")
        call(app, "tokens", "officer")
        call(app, "revoke_token", token["id"])
        call(app, "disable_principal", "pipeline")
        call(app, "settings")
        call(app, "set_setting", "approvals_required", 2)
        queued = jobs.submit(app.ctx, "analysis", {})  # the API's routes queue jobs this way
        call(app, "job", queued["id"])
        call(app, "jobs")
        call(app, "export_subject", grace, root / "grace-export.zip")  # the access export (GDPR Art. 15)
        call(app, "destroy_subject_key", grace)
        call(app, "retire_model", "faceid", reason="superseded")

        # the audit log and maintenance
        call(app, "verify_audit")
        head = call(app, "audit_checkpoint")
        call(app, "audit_prove", event=1)
        call(app, "audit_prove", since=head)
        call(app, "audit_events", limit=20)
        call(app, "status")
        call(vendor, "status")
        call(app, "gc", grace_seconds=0)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    call = Recorder()
    _scenario(call, tmp_path_factory.mktemp("result-types"))
    return call.results


@pytest.mark.parametrize("method", DATA_METHODS)
def test_real_results_match_their_types(results: dict[str, list[Any]], method: str) -> None:
    if method in NOT_EXERCISED:
        pytest.skip(NOT_EXERCISED[method])
    assert method in results, (
        f"{method} is not called in _scenario: call it there, or say why in NOT_EXERCISED"
    )
    problems = [problem for result in results[method] for problem in _check(method, result)]
    assert not problems, "\n".join(problems)
