"""Listings as scripts use them: `ps`, `images` and `volume ls` with -f KEY=VALUE
filters and --format templates (`{{.Names}}`, `table {{.ID}}\\t{{.Status}}`,
`{{json .}}`), through the CLI and the API."""
from __future__ import annotations

import json

import pytest

from pyrt.cli.output import parse_filters, print_template, table
from pyrt.errors import InvalidArgument
from clitools import error, ok


def test_templates_and_tables(capsys):
    rows = [{"ID": "abc", "Names": "web", "Labels": {"a": "1"}}, {"ID": "defg", "Names": "db", "Labels": {}}]
    print_template(rows, "{{.Names}}:{{ .ID }}", {})
    print_template(rows, "table {{.ID}}\\t{{.Names}}", {"ID": "CONTAINER ID"})
    print_template(rows[:1], "{{json .Labels}}|{{json .}}", {})
    out = capsys.readouterr().out.split("\n")
    assert out[:2] == ["web:abc", "db:defg"]
    assert out[2:5] == ["CONTAINER ID   NAMES", "abc            web", "defg           db"]
    labels, row = out[5].split("|")
    assert json.loads(labels) == {"a": "1"} and json.loads(row)["ID"] == "abc"
    with pytest.raises(InvalidArgument, match="no field 'Nope'"):
        print_template(rows, "{{.Nope}}", {})
    with pytest.raises(InvalidArgument, match="unsupported template action"):
        print_template(rows, "{{range .}}x{{end}}", {})
    assert table(["A", "LONGER"], [["x", "y"]]) == "A   LONGER\nx   y"
    assert parse_filters(["name=a", "name=b", "status=exited"], ("name", "status")) == \
        {"name": ["a", "b"], "status": ["exited"]}
    with pytest.raises(InvalidArgument, match="invalid filter"):
        parse_filters(["nope=1"], ("name",))


def test_ps_filters_and_formats(store):
    ok(store.cli("run", "-d", "--name", "web1", "base:1", "sleep", "100"))
    ok(store.cli("run", "--name", "job-ok", "base:1", "true"))
    assert store.cli("run", "--name", "job-bad", "base:1", "sh", "-c", "exit 3").returncode == 3
    ok(store.cli("create", "--name", "fresh", "base:1", "true"))

    def names(*args):
        return sorted(ok(store.cli("ps", *args, "--format", "{{.Names}}")).split())
    assert names() == ["web1"]
    assert names("-a") == ["fresh", "job-bad", "job-ok", "web1"]
    assert names("-f", "status=exited") == ["job-bad", "job-ok"]  # a status filter looks at all
    assert names("-f", "status=exited", "-f", "status=created") == ["fresh", "job-bad", "job-ok"]
    assert names("-a", "-f", "exited=3") == ["job-bad"]
    assert names("-a", "-f", "name=^job") == ["job-bad", "job-ok"]
    assert names("-a", "-f", "name=job", "-f", "exited=0") == ["job-ok"]
    assert names("-a", "-f", "ancestor=base:1") == ["fresh", "job-bad", "job-ok", "web1"]
    web = store.get("web1")
    assert ok(store.cli("ps", "-q", "-f", f"id={web.id[:6]}")).split() == [web.short_id]
    out = ok(store.cli("ps", "-a", "--format", "table {{.Names}}\\t{{.State}}", "-f", "name=web"))
    assert out.split("\n")[:2] == ["NAMES   STATE", "web1    running"]
    assert json.loads(ok(store.cli("ps", "--format", "{{json .}}")))["Names"] == "web1"
    error(store.cli("ps", "-f", "bogus=x"), match="invalid filter")
    ok(store.cli("create", "--name", "labelled", "-l", "team=a", "-l", "tier", "base:1", "true"))
    assert names("-a", "-f", "label=team=a") == ["labelled"] and names("-a", "-f", "label=tier") == ["labelled"]
    assert names("-a", "-f", "label=team=a", "-f", "label=nope") == []  # every label filter must hold
    assert json.loads(ok(store.cli("inspect", "-f", "{{json .Config.Labels}}", "labelled"))) == \
        {"team": "a", "tier": ""}
    error(store.cli("ps", "--format", "{{.Nope}}"), match="no field 'Nope'")
    assert [c.name for c in store.rt.containers.list(filters={"status": "exited", "exited": 3})] == ["job-bad"]


def test_images_and_volumes(store, tmp_shm):
    rt = store.rt
    c = rt.containers.create("base:1", ["true"])
    child = c.commit("app", "1", changes=["LABEL team=a"])
    dangling = c.commit("app", "2")
    newer = c.commit("app", "2")  # takes the tag: the first app:2 dangles
    c.remove()

    def refs(*args):
        return ok(store.cli("images", *args, "--format", "{{.Repository}}:{{.Tag}}")).split()
    assert refs("-f", "reference=app") == ["app:2", "app:1"]
    assert refs("-f", "label=team=a") == ["app:1"] and refs("-f", "label=team=b") == []
    assert refs("-f", "dangling=true") == ["<none>:<none>"]
    assert "<none>:<none>" not in refs("-f", "dangling=false")
    assert refs("-f", f"before={newer.id}") == ["<none>:<none>", "app:1", "base:1"]
    assert refs("-f", f"since={child.id}") == ["app:2", "<none>:<none>"]
    assert ok(store.cli("images", "--format", "{{.ID}}", "-f", "dangling=true")).strip() == dangling.id[7:19]
    assert ok(store.cli("images", "--format", "{{.ID}}", "app:1")).strip() == child.id[7:19]
    error(store.cli("images", "-f", "nope=1"), match="invalid filter")

    rt.volumes.create("keep-a", labels={"k": "v"})
    rt.volumes.create("keep-b")
    store.rt.containers.create("base:1", ["true"], volumes=["used-c:/u"])
    assert ok(store.cli("volume", "ls", "--format", "{{.Name}}", "-f", "dangling=true")).split() == \
        ["keep-a", "keep-b"]
    assert ok(store.cli("volume", "ls", "-q", "-f", "name=keep", "-f", "label=k=v")).split() == ["keep-a"]
    out = ok(store.cli("volume", "ls"))
    assert out.split("\n")[0].split() == ["DRIVER", "VOLUME", "NAME"] and "used-c" in out


def test_inspect_formats(store):
    ok(store.cli("run", "-d", "--name", "i1", "base:1", "sleep", "100"))
    c = store.get("i1")
    assert ok(store.cli("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}}", "i1")) == \
        "running true /i1\n"
    assert ok(store.cli("container", "inspect", "--format", "{{.State.Pid}}", "i1")) == f"{c.state['Pid']}\n"
    assert json.loads(ok(store.cli("inspect", "--format", "{{json .Config.Cmd}}", "i1"))) == ["sleep", "100"]
    img = store.rt.images.get("base:1")
    assert ok(store.cli("image", "inspect", "-f", "{{.Id}}", "base:1")) == img.id + "\n"
    store.rt.volumes.create("iv")
    assert ok(store.cli("volume", "inspect", "-f", "{{.Name}}:{{.Driver}}", "iv")) == "iv:local\n"
    assert json.loads(ok(store.cli("inspect", "i1")))[0]["Id"] == c.id  # no format: the JSON list
    error(store.cli("inspect", "-f", "{{.State.Nope}}", "i1"), match="no field 'State.Nope'")
    error(store.cli("inspect", "-f", "{{range .Mounts}}{{end}}", "i1"), match="unsupported template action")


def test_info_and_version(store):
    ok(store.cli("run", "-d", "--name", "v1", "base:1", "sleep", "100"))
    store.rt.volumes.create("vv")
    info = json.loads(ok(store.cli("info", "--format", "json")))
    assert info["DockerRootDir"] == store.root and info["Driver"] in ("overlay", "copy")
    assert (info["Containers"], info["ContainersRunning"], info["Volumes"]) == (1, 1, 1)
    assert info["Images"] == len(store.rt.images.list(all=True)) and info["NCPU"] >= 1
    text = ok(store.cli("system", "info"))
    assert "Containers: 1 (running 1, paused 0, stopped 0)" in text and "Cgroup Version:" in text
    assert ok(store.cli("info", "-f", "{{.ContainersRunning}}")) == "1\n"
    import pyrt
    assert ok(store.cli("version", "-f", "{{.Version}}")) == pyrt.__version__ + "\n"
    assert json.loads(ok(store.cli("version", "--format", "json")))["Os"] == "linux"
