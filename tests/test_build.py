"""`pyrt build`: the Dockerfile parser and .dockerignore rules (unit tests), then
real builds on a busybox image in a store on /dev/shm: each instruction's effect on
the image, COPY/ADD semantics, multi-stage builds, build args, the layer cache, the
CLI's output and its errors (nothing tagged, no container left)."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import tarfile

import pytest
import zstandard

import pyrt
from pyrt.dockerfile.context import IgnoreRules, ImageTree
from pyrt.dockerfile.parser import expand, expand_words, parse, split_raw
from pyrt.errors import BuildError
import helpers
from clitools import PYRT, cli
from imagetools import OCIBuilder, check_store, make_tar

# -- parser ------------------------------------------------------------------------------------

def test_parse_lines_comments_continuations_and_case():
    text = ("# syntax=whatever\n# escape=\\\n\n# comment\nfrom busybox AS b\n"
            "run echo a \\\n  # inside\n\n  b\nCOPY --from=b --chown=1:2 x y\n"
            'CMD ["a", "b"]\nENTRYPOINT not [json\n')
    ins, esc = parse(text)
    assert esc == "\\"
    assert [(i.cmd, i.line) for i in ins] == [("FROM", 5), ("RUN", 6), ("COPY", 10), ("CMD", 11),
                                              ("ENTRYPOINT", 12)]
    assert ins[1].args == "echo a   b" and ins[1].json is None
    assert ins[2].flags == {"from": "b", "chown": "1:2"} and ins[2].args == "x y"
    assert ins[3].json == ["a", "b"] and ins[4].json is None


def test_parse_escape_directive_and_errors():
    ins, esc = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo hi\n")
    assert esc == "`" and ins[1].args == "dir c:\\   && echo hi"
    with pytest.raises(BuildError, match=r"^Dockerfile:3: unknown instruction: FOO$"):
        parse("FROM x\n\nfoo bar\n")
    with pytest.raises(BuildError, match=r"Dockerfile:2: RUN does not support the option --mount"):
        parse("FROM x\nRUN --mount=type=cache,target=/x true\n")
    assert parse("FROM x\nonbuild RUN true\n")[0][1].cmd == "ONBUILD"
    with pytest.raises(BuildError, match="requires at least one argument"):
        parse("FROM x\nWORKDIR\n")


def test_substitution():
    env = {"A": "a", "E": "", "SP": "x y"}
    assert expand("$A-${A}-${NOPE}-\\$A-'$A'-\"$A\"", env) == "a-a--$A-$A-a"
    assert expand("${A:-d} ${NOPE:-d} ${E:-d} ${E-d} ${A:+alt} ${NOPE:+alt} ${E+alt}", env) == "a d d  alt  alt"
    assert expand("${NOPE:-${A}b}", env) == "ab"
    assert expand_words('$SP "$SP" \'q w\' a\\ b', env) == ["x", "y", "x y", "q w", "a b"]
    assert expand_words('"" x', env) == ["", "x"]
    assert split_raw('A=1 B="x y" C=a\\ b') == ["A=1", 'B="x y"', "C=a\\ b"]
    with pytest.raises(BuildError, match="bad substitution"):
        expand("${A!}", env)
    with pytest.raises(BuildError, match="must be set"):
        expand("${NOPE:?must be set}", env)


def test_dockerignore_rules():
    rules = IgnoreRules("# comment\n*.log\n!keep.log\nbuild\n**/tmp\ndocs/**/*.md\n/abs\n")
    for path, excluded in [("a.log", True), ("keep.log", False), ("sub/a.log", False), ("build", True),
                           ("build/x/y", True), ("tmp", True), ("a/b/tmp/c", True), ("docs/x.md", True),
                           ("docs/a/b/x.md", True), ("docs/x.txt", False), ("abs", True), ("main.c", False)]:
        assert rules.excluded(path) == excluded, path


# -- builds ----------------------------------------------------------------------------------------

@pytest.fixture
def rt(tmp_shm, rootfs):
    """A store with busybox:latest (the test rootfs as one layer)."""
    r = pyrt.Runtime(os.path.join(tmp_shm, "store"), quiet=True)
    r.images.import_image(rootfs, "busybox", "latest", changes=["ENV PATH=/bin:/usr/bin", 'CMD ["sh"]'])
    try:
        yield r
        assert r.containers.list(all=True) == []
        check_store(r)
    finally:
        r.close()


def context(tmp, dockerfile, files=None, name="ctx"):
    """A context directory with a Dockerfile and files {path: text | bytes}."""
    root = os.path.join(tmp, name)
    os.makedirs(root, exist_ok=True)
    for path, data in {"Dockerfile": dockerfile, **(files or {})}.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    return root


def build(rt, tmp, dockerfile, files=None, **kw):
    img, log = rt.images.build(context(tmp, dockerfile, files), **kw)
    return img, "".join(item["stream"] for item in log)


def tree(img) -> ImageTree:
    return ImageTree(list(reversed(img.layer_paths)))


def read(img, path) -> bytes:
    t = tree(img)
    with open(t.host_path(t.resolve(path)), "rb") as f:
        return f.read()


def test_instructions_make_the_config(rt, tmp_shm):
    img, log = build(rt, tmp_shm, """\
FROM busybox
ENV A=1 B="two words" \\
    C=${A}x
ENV D $A and more
LABEL version=1.0 "with space"="v v"
EXPOSE 80 53/udp 8000-8001
VOLUME /data /other
VOLUME ["/v1", "/v2"]
USER 1000:1000
STOPSIGNAL SIGINT
WORKDIR /srv
WORKDIR app
ENTRYPOINT ["/bin/echo"]
CMD run me
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT exec echo
""", tag="meta:1")
    cfg = img.attrs["Config"]
    assert cfg["Env"] == ["PATH=/bin:/usr/bin", "A=1", "B=two words", "C=x", "D=1 and more"]
    assert cfg["Labels"] == {"version": "1.0", "with space": "v v"}
    assert sorted(cfg["ExposedPorts"]) == ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
    assert sorted(cfg["Volumes"]) == ["/data", "/other", "/v1", "/v2"]
    assert cfg["User"] == "1000:1000" and cfg["StopSignal"] == "SIGINT" and cfg["WorkingDir"] == "/srv/app"
    # CMD of this stage stays after a later ENTRYPOINT; the shell form goes through SHELL
    assert cfg["Cmd"] == ["/bin/sh", "-c", "run me"] and cfg["Entrypoint"] == ["/bin/sh", "-ec", "exec echo"]
    assert cfg["Shell"] == ["/bin/sh", "-ec"]  # recorded, and used by builds FROM this image
    child, _ = build(rt, tmp_shm, "FROM meta:1\nCMD again\n")
    assert child.attrs["Config"]["Cmd"] == ["/bin/sh", "-ec", "again"]
    assert stat.S_ISDIR(tree(img).lstat("srv/app").st_mode)
    assert img.tags == ["meta:1"]
    hist = img.config["history"]
    assert len(hist) == 15 and hist[-1]["created_by"] == 'ENTRYPOINT ["/bin/sh", "-ec", "exec echo"]'
    # /srv exists in busybox: only WORKDIR app makes a layer
    assert [h.get("empty_layer", False) for h in hist[1:]] == [True] * 9 + [False] + [True] * 4
    assert "Successfully built " + img.id[7:19] in log and "Successfully tagged meta:1" in log
    # an ENTRYPOINT resets the CMD of the base image
    img2, _ = build(rt, tmp_shm, "FROM busybox\nENTRYPOINT [\"/bin/cat\"]\n")
    assert img2.attrs["Config"]["Cmd"] is None and img.attrs["Config"]["Env"][0] == "PATH=/bin:/usr/bin"


def test_run_copy_add_and_dockerignore(rt, tmp_shm):
    tar_members = {"t/one": b"1\n", "t/two": b"2\n"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in tar_members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.uid, ti.mode = len(data), 42, 0o640
            tf.addfile(ti, io.BytesIO(data))
    plain = buf.getvalue()
    files = {
        "a.txt": "A\n", "dir/x": "X\n", "dir/sub/y": "Y\n", "dir/skip.log": "no\n", "w1.c": "1", "w2.c": "2",
        ".dockerignore": "# logs\n**/*.log\nsecret\ndir/sub\n!dir/sub/y\n", "secret": "S\n", "dir/sub/z": "Z\n",
        "t.tar": plain, "t.tar.gz": gzip.compress(plain), "t.tar.bz2": bz2.compress(plain),
        "t.tar.xz": lzma.compress(plain), "t.tar.zst": zstandard.ZstdCompressor().compress(plain),
        "notatar.gz": gzip.compress(b"just data", mtime=0),
    }
    img, log = build(rt, tmp_shm, """\
FROM busybox
RUN echo "out $HOME"; echo err >&2; echo 'app:x:2000:2001::/:/bin/sh' >> /etc/passwd; \\
    echo 'grp:x:3000:' >> /etc/group; mkdir /real; ln -s /real /lnk
COPY a.txt /file-renamed
COPY a.txt dir /lnk/
COPY --chown=app:grp --chmod=600 a.txt /owned/
COPY --chown=app dir /owned-dir
COPY w*.c /wild/
ADD t.tar t.tar.gz /x/plain/
ADD t.tar.bz2 /x/bz2
ADD t.tar.xz t.tar.zst notatar.gz /x/more/
ADD --chown=7:8 t.tar /x/chowned/
RUN ["/bin/sh", "-c", "cat /real/a.txt /real/sub/y"]
""", files)
    assert "out /root\nerr\n" in log and "A\nY\n" in log
    t = tree(img)
    assert read(img, "/file-renamed") == b"A\n"
    assert read(img, "/real/a.txt") == b"A\n" and read(img, "/real/x") == b"X\n"
    assert t.lstat("real/skip.log") is None and t.listdir("real/sub") == ["y"]
    st = t.lstat("owned/a.txt")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (2000, 3000, 0o600)
    st = t.lstat("owned-dir/sub/y")
    assert (st.st_uid, st.st_gid) == (2000, 2000)  # without a group: gid = uid
    assert t.lstat("a.txt") is None and (t.lstat("real/a.txt").st_uid, t.lstat("real/a.txt").st_gid) == (0, 0)
    assert t.listdir("wild") == ["w1.c", "w2.c"]
    for d in ("x/plain", "x/bz2", "x/more"):
        assert read(img, f"/{d}/t/one") == b"1\n" and read(img, f"/{d}/t/two") == b"2\n"
    st = t.lstat("x/plain/t/one")
    assert st.st_uid == 42 and stat.S_IMODE(st.st_mode) == 0o640
    assert read(img, "/x/more/notatar.gz") == gzip.compress(b"just data", mtime=0)
    assert t.lstat("x/chowned/t/one").st_uid == 7 and t.lstat("x/chowned/t/one").st_gid == 8
    assert t.lstat("x/plain/t.tar") is None


def test_multi_stage_scratch_and_target(rt, tmp_shm):
    dockerfile = """\
ARG GREETING=hello
ARG FLAVOR
FROM busybox AS builder
ARG GREETING
RUN mkdir /out && echo "$GREETING" > /out/msg && echo "flavor=$FLAVOR" > /out/flavor
FROM builder as second
RUN echo second > /out/second
FROM scratch
COPY --from=builder /out/msg /msg
COPY --from=1 /out /all/
COPY --from=busybox /etc/passwd /passwd
ENV ONLY=scratch
"""
    img, log = build(rt, tmp_shm, dockerfile, buildargs={"FLAVOR": "ignored", "UNUSED": "1"})
    assert len(img.layers) == 3 and [p for p in tree(img).listdir("")] == ["all", "msg", "passwd"]
    assert read(img, "/msg") == b"hello\n" and read(img, "/all/second") == b"second\n"
    assert read(img, "/all/flavor") == b"flavor=\n"  # FLAVOR was not declared in the stage
    assert read(img, "/passwd").startswith(b"root:")
    assert img.attrs["Config"] == {"Env": ["ONLY=scratch"]}
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in log
    target, log = build(rt, tmp_shm, dockerfile, target="builder", buildargs={"GREETING": "hey"}, tag="t:b")
    assert read(target, "/out/msg") == b"hey\n" and target.tags == ["t:b"] and "STEP 5/5: RUN" in log
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        build(rt, tmp_shm, dockerfile, target="nope")
    # an image of config only on scratch has no layer
    empty, _ = build(rt, tmp_shm, "FROM scratch\nLABEL a=b\n")
    assert empty.layers == [] and empty.labels == {"a": "b"}


def test_build_args_and_env(rt, tmp_shm):
    img, log = build(rt, tmp_shm, """\
ARG TAG=latest
FROM busybox:${TAG}
ARG A=default
ARG B=${A}-b
ENV E=from-env
ARG E=from-arg
RUN echo "A=$A B=$B E=$E" > /args
""", buildargs={"A": "given", "TAG": "latest"})
    assert read(img, "/args") == b"A=given B=given-b E=from-env\n"
    assert img.attrs["Config"]["Env"] == ["PATH=/bin:/usr/bin", "E=from-env"]  # args are not kept
    assert "not consumed" not in log
    with pytest.raises(BuildError, match="invalid build arg '1x'"):
        build(rt, tmp_shm, "FROM busybox\n", buildargs={"1x": "v"})


def test_cache(rt, tmp_shm):
    dockerfile = """\
FROM busybox
ENV A=1
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /b.txt
CMD ["cat", "/b.txt"]
"""
    first, log1 = build(rt, tmp_shm, dockerfile, {"a.txt": "v1\n"})
    assert "CACHED" not in log1
    again, log2 = build(rt, tmp_shm, dockerfile, {"a.txt": "v1\n"})
    assert again.id == first.id and log2.count("Using cache (CACHED)") == 5 and "Running in" not in log2
    # same content, new mtime: still cached
    os.utime(os.path.join(tmp_shm, "ctx", "a.txt"), (1, 1))
    assert build(rt, tmp_shm, dockerfile)[0].id == first.id
    changed, log3 = build(rt, tmp_shm, dockerfile, {"a.txt": "v2\n"})
    assert log3.count("CACHED") == 2 and changed.id != first.id and read(changed, "/b.txt") == b"v2\n"
    assert changed.history()[3]["Id"] == first.history()[3]["Id"]  # the steps before the COPY are shared
    nocache, log4 = build(rt, tmp_shm, dockerfile, nocache=True)
    assert "CACHED" not in log4 and nocache.id != changed.id
    # a mode change is a change
    os.chmod(os.path.join(tmp_shm, "ctx", "a.txt"), 0o600)
    assert build(rt, tmp_shm, dockerfile)[1].count("CACHED") == 2
    # rows go with their image
    rows = rt.store.db.query("SELECT COUNT(*) FROM build_cache")[0][0]
    rt.images.remove(first.id)
    assert rt.store.db.query("SELECT COUNT(*) FROM build_cache")[0][0] < rows
    assert all(rt.images.exists(r["image_id"]) for r in rt.store.db.query("SELECT image_id FROM build_cache"))


def test_failing_run_and_bad_sources(rt, tmp_shm):
    with pytest.raises(BuildError, match=r"^Dockerfile:3: RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line\$i; "
                                         r"done; exit 7: exit code 7$") as e:
        build(rt, tmp_shm, "FROM busybox\nENV X=1\nRUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; "
                           "exit 7\n", tag="never:1")
    assert e.value.output == [f"line{i}" for i in range(3, 13)]
    os.symlink("/etc/shadow", os.path.join(context(tmp_shm, "FROM busybox\n"), "leak"))
    for dockerfile, match in [
        ("FROM busybox\nCOPY ../x /\n", r"Dockerfile:2: COPY: \.\./x: forbidden path outside the build context"),
        ("FROM busybox\nCOPY leak /\n", "COPY: leak: no such file or directory in the build context"),
        ("FROM busybox\nCOPY nope /\n", "nope: no such file or directory"),
        ("FROM busybox\nCOPY Dockerfile Dockerfile /x\n", "the destination must be a directory ending with /"),
        ("FROM busybox\nCOPY *.nothing /x/\n", "no source files were specified"),
        ("FROM busybox\nADD http://example.com/x /x\n", "URLs are not supported"),
        ("FROM busybox\nUSER nobody-here\nRUN true\n", "Dockerfile:3: RUN: unable to find user nobody-here"),
        ("FROM nosuchimage\n", "Dockerfile:1: FROM: image 'nosuchimage' is not in the store and could not be pulled"),
        ("FROM busybox\nCOPY --from=nostage /x /\n", "--from=nostage: no such stage or image"),
        ("ENV A=1\n", "ENV before any FROM"),
        ("# only a comment\n", "the Dockerfile has no instructions"),
    ]:
        with pytest.raises(BuildError, match=match):
            build(rt, tmp_shm, dockerfile, tag="never:1")
    assert not rt.images.exists("never:1")


# -- the command line --------------------------------------------------------------------------------

def test_cli_build_images_tag_history(rt, tmp_shm):
    root = rt.root
    ctx = context(tmp_shm, "FROM busybox\nRUN echo built | tee /f\nLABEL step=3\n", {"Dockerfile.alt": "FROM busybox\n"})
    r = cli(root, "build", "-t", "cli:1", "-t", "cli:2", ctx)
    out = r.stdout.decode()
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    lines = out.splitlines()
    assert lines[0] == "STEP 1/3: FROM busybox" and "STEP 2/3: RUN echo built | tee /f" in lines and "built" in lines
    assert lines[-3].startswith("Successfully built ") and lines[-2:] == ["Successfully tagged cli:1",
                                                                          "Successfully tagged cli:2"]
    final = lines[-3].split()[-1]
    intermediate = [ln.split()[-1] for ln in lines if ln.startswith(" ---> ") and "Running" not in ln
                    and "Removed" not in ln][1]
    r = cli(root, "build", "-q", "-t", "cli:1", ctx)
    assert r.returncode == 0 and r.stdout.decode().strip()[7:19] == final
    assert intermediate not in cli(root, "images").stdout.decode()
    assert intermediate in cli(root, "images", "-a").stdout.decode()
    assert cli(root, "tag", intermediate, "promoted:1").returncode == 0
    assert rt.images.get("promoted:1").id[7:19] == intermediate
    hist = cli(root, "history", "cli:1").stdout.decode()
    assert "LABEL step=3" in hist and "/bin/sh -c echo built | tee /f" in hist
    r = cli(root, "build", "-f", os.path.join(ctx, "Dockerfile.alt"), "-t", "alt", ctx)
    assert r.returncode == 0 and rt.images.get("alt").id == rt.images.get("busybox").id


@pytest.mark.parametrize("dockerfile, args, message", [
    ("FROM busybox\nFOO bar\n", [], "pyrt: Dockerfile:2: unknown instruction: FOO\n"),
    ("RUN true\n", [], "pyrt: Dockerfile:1: RUN before any FROM"),
    ("FROM busybox\nCOPY ../x /\n", [], "forbidden path outside the build context"),
    ("FROM busybox\nCOPY missing /\n", [], "pyrt: Dockerfile:2: COPY: missing: no such file"),
    ("FROM busybox\nRUN echo out; false\n", [], "pyrt: Dockerfile:2: RUN echo out; false: exit code 1\n"),
    ("FROM busybox\n", ["--target", "nope"], "target stage 'nope' could not be found"),
    ("FROM busybox\n", ["--build-arg", "=x"], "pyrt: invalid --build-arg '=x': expected NAME=VALUE\n"),
])
def test_cli_errors(rt, tmp_shm, dockerfile, args, message):
    ctx = context(tmp_shm, dockerfile)
    r = cli(rt.root, "build", "-t", "never:1", *args, ctx)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("pyrt: ") and err.count("\n") == 1 and message in err, err
    assert not rt.images.exists("never:1")


def test_cli_interrupted_build_removes_its_container(rt, tmp_shm):
    ctx = context(tmp_shm, "FROM busybox\nRUN echo started; sleep 30\n")
    p = subprocess.Popen([PYRT, "--root", rt.root, "build", "-t", "never:1", ctx], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd="/", preexec_fn=helpers.default_sigint)
    try:
        for line in p.stdout:
            if line == b"started\n":
                break
        p.send_signal(2)  # SIGINT: Ctrl-C
        assert p.wait(timeout=20) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert not rt.images.exists("never:1")


def test_healthcheck_onbuild_and_dockerfile_on_stdin(rt, tmp_shm):
    img, _ = build(rt, tmp_shm, """\
FROM busybox
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --retries=3 CMD wget -q localhost || exit 1
""", tag="hc:1")
    assert img.attrs["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 30_000_000_000,
        "Timeout": 90_000_000_000, "StartPeriod": 500_000_000, "Retries": 3}
    img, _ = build(rt, tmp_shm, 'FROM hc:1\nHEALTHCHECK CMD ["/bin/true"]\n')
    assert img.attrs["Config"]["Healthcheck"] == {"Test": ["CMD", "/bin/true"]}
    img, _ = build(rt, tmp_shm, "FROM hc:1\nHEALTHCHECK NONE\n")
    assert img.attrs["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    for bad, match in (("HEALTHCHECK --interval=5x CMD true", "invalid --interval"),
                       ("HEALTHCHECK --retries=0 CMD true", "invalid --retries"),
                       ("HEALTHCHECK true", "NONE, or"), ("HEALTHCHECK --bogus=1 CMD true", "--bogus"),
                       ("ONBUILD FROM busybox", "not allowed as an ONBUILD trigger"),
                       ("ONBUILD NOPE x", "unknown instruction")):
        with pytest.raises(BuildError, match=match):
            build(rt, tmp_shm, f"FROM busybox\n{bad}\n", tag="never:1")
    assert not rt.images.exists("never:1")

    # ONBUILD: recorded in the base; run (in the child's context) right after FROM base
    base, _ = build(rt, tmp_shm, "FROM busybox\nONBUILD COPY app.txt /app/\nONBUILD RUN cat /app/app.txt > /seen\n",
                    tag="onb:1")
    assert base.attrs["Config"]["OnBuild"] == ["COPY app.txt /app/", "RUN cat /app/app.txt > /seen"]
    assert tree(base).lstat("seen") is None
    child, log = build(rt, tmp_shm, "FROM onb:1\nCMD [\"cat\", \"/seen\"]\n", {"app.txt": "from the child\n"},
                       tag="onb-child:1")
    assert "# Executing 2 build triggers" in log
    assert not child.attrs["Config"].get("OnBuild")  # a grandchild does not run them again
    assert rt.containers.run("onb-child:1", remove=True) == b"from the child\n"

    # -f - : the Dockerfile on standard input
    ctx = context(tmp_shm, "FROM nosuch-not-used\n", name="stdin-ctx")
    r = subprocess.run([PYRT, "--root", rt.root, "build", "-q", "-t", "stdin:1", "-f", "-", ctx],
                       input=b"FROM busybox\nLABEL from=stdin\n", capture_output=True)
    assert r.returncode == 0, r.stderr
    assert rt.images.get("stdin:1").attrs["Config"]["Labels"] == {"from": "stdin"}
    assert r.stdout.decode().strip() == rt.images.get("stdin:1").id


def test_copy_from_a_hostile_image_never_reads_host_files(rt, tmp_shm):
    """A lower layer's `etc -> /etc` symlink under an upper layer's real `etc/`
    directory: overlay shows only the upper directory, and a COPY --from must too
    (following the lower symlink would read the host's /etc)."""
    b = OCIBuilder(os.path.join(tmp_shm, "evil"))
    b.image([make_tar([("symlink", "etc", "/etc"), ("symlink", "up", "../../../../../../etc")]),
             make_tar([("dir", "etc"), ("file", "etc/mine", "image file\n"), ("dir", "up")])], ref="evil:1")
    b.write()
    rt.images.load(b.path)
    for src in ("/etc/hostname", "/up/hostname", "/etc/passwd"):
        with pytest.raises(BuildError, match="no such file"):
            build(rt, tmp_shm, f"FROM busybox\nCOPY --from=evil:1 {src} /leak\n", tag="never:1")
    img, _ = build(rt, tmp_shm, "FROM busybox\nCOPY --from=evil:1 /etc/ /copied/\n")
    t = tree(img)
    assert t.listdir("copied") == ["mine"]  # the image's directory, nothing of the host's
    assert not rt.images.exists("never:1")


def test_run_steps_have_no_host_network_unless_asked(rt, tmp_shm, rootfs_kind):
    """A RUN step gets a network namespace of its own (as a default `pyrt run`; the
    suite's default network is none): a Dockerfile cannot reach a service on the
    host's loopback. network_mode="host" (`--network host`) is the explicit opt-in,
    as docker's."""
    import socket
    import threading
    if rootfs_kind != "busybox":
        pytest.skip("needs busybox's nc")
    got = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                got.append(conn.recv(100))
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    dockerfile = f"FROM busybox\nRUN echo from-the-build | nc -w 2 127.0.0.1 {srv.getsockname()[1]}; true\n"
    try:
        build(rt, tmp_shm, dockerfile, nocache=True)
        assert got == []
        with pytest.raises(BuildError, match="network nosuch not found"):
            build(rt, tmp_shm, dockerfile, nocache=True, network_mode="nosuch")
        build(rt, tmp_shm, dockerfile, nocache=True, network_mode="host")
        assert got == [b"from-the-build\n"]
        r = subprocess.run([PYRT, "--root", rt.root, "build", "-q", "--no-cache", "--network", "host",
                            context(tmp_shm, dockerfile, name="ctx2")], capture_output=True)
        assert r.returncode == 0, r.stderr
        assert got == [b"from-the-build\n"] * 2
    finally:
        stop.set()
        t.join()
        srv.close()
