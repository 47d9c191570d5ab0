"""The Docker files: linted by hadolint, compose.yml valid against the Compose specification,
every variable they set a real node setting, the same pins as pyproject, and the translation
scripts/cluster applies to run the same topology as processes."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import _parser
from contracts.anvil import DEV_DEPLOYER_KEY, create_address
from node.settings import Settings
from node.signing import SigningKey
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cluster

DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
SETTINGS = {f"KNOWHUB_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def knowhub_services() -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if str(spec.get("image", "")).startswith("knowhub:")
    }


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for req in project["dependencies"]:
        name, version = re.split(r"==", req)
        pins[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return pins


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(bad)], capture_output=True)
    assert result.returncode != 0 and b"DL3007" in result.stdout


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose(DOCKER / "compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(
        (DOCKER / "compose.yml").read_text().replace('    restart: "no"', "    restarts: no")
    )
    assert check_compose(broken).returncode != 0  # the schema check does reject mistakes


def test_every_compose_variable_is_a_node_setting() -> None:
    used: set[str] = set()
    for name, spec in knowhub_services().items():
        env = spec.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        used |= set(env)
    assert used, "no knowhub environment found"
    unknown = sorted(used - SETTINGS)
    assert not unknown, f"not settings of the node: {unknown}"
    # and every setting the Dockerfile sets too
    docker_env = cluster.dockerfile_env(DOCKER / "Dockerfile")
    assert set(docker_env) <= SETTINGS
    assert docker_env["KNOWHUB_DATA_DIR"] == "/data"


def test_compose_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's environment, interpolated, is accepted by Settings as the node reads it."""
    environ = {"KNOWHUB_API_KEYS": "x" * 24}
    for name, spec in knowhub_services().items():
        if spec.get("command"):
            continue
        env = cluster.dockerfile_env()
        env |= {k: cluster.interpolate(str(v), environ) for k, v in spec["environment"].items()}
        for key in list(Settings.model_fields):
            monkeypatch.delenv(f"KNOWHUB_{key.upper()}", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.api_keys, name
        assert settings.chain_rpc == "http://anvil:8545"


def test_init_command_is_a_real_cli_invocation() -> None:
    command = compose()["services"]["init"]["command"]
    args = _parser().parse_args([str(a) for a in command])
    assert isinstance(args, argparse.Namespace)
    assert args.command == "cluster" and args.cluster_command == "init"
    members = [m.partition("=")[0] for m in args.member]
    nodes = [n for n, s in knowhub_services().items() if not s.get("command")]
    assert members == [f"/cluster/{n}" for n in sorted(nodes)]
    for name in nodes:  # each node's files are the ones init writes for it
        env = compose()["services"][name]["environment"]
        assert env["KNOWHUB_KEY_FILE"] == f"/cluster/{name}/operator.key"
        assert env["KNOWHUB_P2P_KEY_FILE"] == f"/cluster/{name}/p2p.key"
        assert env["KNOWHUB_BOOTSTRAP_FILE"] == f"/cluster/{name}/bootstrap"


def test_compose_registry_is_where_init_deploys_it() -> None:
    deployer = SigningKey(bytes.fromhex(DEV_DEPLOYER_KEY)).address
    expected = create_address(deployer, 0)
    assert compose()["x-knowhub-env"]["KNOWHUB_REGISTRY_ADDRESS"] == expected


def test_dockerfile_pins_what_pyproject_pins() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    pins = pyproject_pins()
    torch = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M)
    assert torch and torch.group(1) == pins["torch"]
    # never the CUDA wheels: PyTorch's CPU index by default, and always the +cpu build
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert re.search(
        r'pip install -c requirements/constraints.txt --index-url "\$\{TORCH_INDEX_URL\}" '
        r'\\\n\s+"torch==\$\{TORCH_VERSION\}\+cpu"',
        text,
    )
    assert re.search(r"pip install -c requirements/constraints.txt \.", text)
    python = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)\.\d+$", text, re.M)
    assert python and (int(python.group(1)), int(python.group(2))) == sys.version_info[:2]
    # the constraints file the image installs with agrees with every pyproject pin
    constraints = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        constraints[name.lower().replace("_", "-")] = version
    for name, version in pins.items():
        assert constraints.get(name) == version, f"{name}: pyproject {version}, constraints"


def test_dockerfile_runs_unprivileged_with_health_and_volume() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'VOLUME ["/data"]' in text
    assert re.search(r'^ENTRYPOINT \["knowhub"\]$', text, re.M)
    assert re.search(r'^CMD \["node"\]$', text, re.M)
    assert text.count("\nFROM ") == 2  # build and runtime stages


def test_cluster_translation_of_the_container_world(tmp_path: Path) -> None:
    assert cluster.interpolate("${A:-x}/${B:-y}", {"A": "1"}) == "1/y"
    with pytest.raises(SystemExit, match="set it"):
        cluster.interpolate("${MISSING:?set it}", {})
    net = cluster.Cluster(tmp_path, free_ports=True, ipfs_api=None)
    env = net.node_env("node2")
    assert env["KNOWHUB_CHAIN_RPC"] == f"http://127.0.0.1:{net.ports['anvil'][8545]}"
    assert env["KNOWHUB_KEY_FILE"] == str(tmp_path.resolve() / "cluster/node2/operator.key")
    assert env["KNOWHUB_HOST"] == "127.0.0.1"
    assert "KNOWHUB_IPFS_API" not in env  # no Kubo here unless --ipfs-api
    init = net.init_command()
    assert f"--member={tmp_path.resolve()}/cluster/node1=/dns4/localhost/tcp/" in " ".join(init)


def test_every_knowhub_container_mounts_a_named_data_volume() -> None:
    """The image declares VOLUME /data: a service without a named volume there gets an anonymous
    one on each `up` (init did)."""
    spec = compose()
    named = set(spec["volumes"])
    knowhub = [
        name
        for name, service in spec["services"].items()
        if service.get("image", "").startswith("knowhub:")
    ]
    assert {"init", "node1", "node2", "node3"} <= set(knowhub)
    for name in knowhub:
        mounts = [str(v).split(":") for v in spec["services"][name].get("volumes", [])]
        assert any(m[0] in named and m[1] == "/data" for m in mounts), name
