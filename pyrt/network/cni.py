"""The CNI side: a network's conflist and the plugin calls, as the CNI spec (1.0)
says: each plugin of the list is run with CNI_COMMAND, CNI_CONTAINERID,
CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in its environment and its
configuration (with `name`, `cniVersion`, `prevResult` and the `runtimeConfig` of
the capabilities it declares) on stdin; ADD goes down the list, DEL up it.

pyrt's networks use the reference plugins (Debian: containernetworking-plugins):
`bridge` (the bridge, a veth pair, the address, the routes) with `static` IPAM
(the address pyrt allocated, passed as CNI_ARGS IP and GATEWAY), and `portmap`
(published ports, DNAT in the kernel). The conflist of each network is also
written to <root>/networks/<name>.conflist for people to read. DEL is run
whenever it has something to undo: a published port's rules, or an interface in
a namespace that is still there (pyrt.network.endpoints)."""
from __future__ import annotations

import json
import os
import subprocess

from pyrt.errors import NetworkError

CNI_VERSION = "1.0.0"
# where distributions put the reference plugins; $CNI_PATH first
PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")


def plugin_path() -> list[str]:
    extra = [d for d in os.environ.get("CNI_PATH", "").split(":") if d]
    return extra + [d for d in PLUGIN_DIRS if d not in extra]


def find_plugin(kind: str) -> str:
    for d in plugin_path():
        p = os.path.join(d, kind)
        if os.access(p, os.X_OK):
            return p
    raise NetworkError(f"CNI plugin {kind!r} not found in {':'.join(plugin_path())}: install the CNI "
                       "plugins (Debian: apt-get install containernetworking-plugins) or set CNI_PATH")


def conflist(net) -> dict:
    """The CNI network configuration list of a pyrt network."""
    return {
        "cniVersion": CNI_VERSION,
        "name": net.name,
        "plugins": [
            {"type": "bridge", "bridge": net.bridge,
             # the gateway address on the bridge also serves internal networks: the
             # name server listens there (they get no default route, and the
             # firewall lets nothing through the host)
             "isGateway": True, "isDefaultGateway": not net.internal,
             "ipMasq": False,  # one rule per network (pyrt.network.firewall), not one per container
             "hairpinMode": True,  # a container reaches itself through its published ports
             "ipam": {"type": "static"}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def write_conflist(root: str, net) -> None:
    d = os.path.join(root, "networks")
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = os.path.join(d, f".{net.name}.conflist.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(conflist(net), f, indent=2)
        f.write("\n")
    os.rename(tmp, os.path.join(d, f"{net.name}.conflist"))


def remove_conflist(root: str, name: str) -> None:
    try:
        os.unlink(os.path.join(root, "networks", f"{name}.conflist"))
    except FileNotFoundError:
        pass


class Attachment:
    """One container interface on one network: what ADD and DEL are called with."""

    def __init__(self, net, container_id: str, ifname: str, ip: str, ports=(), netns: str = ""):
        self.net, self.container_id, self.ifname, self.ip = net, container_id, ifname, ip
        self.ports = list(ports)  # [{"HostIp", "HostPort", "ContainerPort", "Protocol"}]
        self.netns = netns        # a path to the network namespace ("" on DEL once it is gone)

    @property
    def mac(self) -> str:
        """docker's: 02:42 and the address."""
        return "02:42:" + ":".join(f"{int(b):02x}" for b in self.ip.split("."))

    def args(self) -> str:
        import ipaddress
        prefix = ipaddress.IPv4Network(self.net.subnet).prefixlen
        return f"IgnoreUnknown=1;IP={self.ip}/{prefix};GATEWAY={self.net.gateway};MAC={self.mac}"

    def runtime_config(self) -> dict:
        return {"portMappings": [{"hostPort": p["HostPort"], "containerPort": p["ContainerPort"],
                                  "protocol": p["Protocol"],
                                  "hostIP": "" if p["HostIp"] in ("", "0.0.0.0") else p["HostIp"]}
                                 for p in self.ports]}


def _plugins(att: Attachment) -> list[dict]:
    plugins = conflist(att.net)["plugins"]
    if not att.ports:  # portmap with no ports does nothing: not run at all
        plugins = [p for p in plugins if p["type"] != "portmap"]
    return plugins


def _stdin(att: Attachment, plugin: dict, prev: dict | None) -> bytes:
    conf = dict(plugin, name=att.net.name, cniVersion=CNI_VERSION)
    caps = conf.pop("capabilities", {})
    rc = att.runtime_config()
    wanted = {k: rc[k] for k, on in caps.items() if on and k in rc}
    if wanted:
        conf["runtimeConfig"] = wanted
    if prev is not None:
        conf["prevResult"] = prev
    return json.dumps(conf).encode()


def _run(att: Attachment, command: str, plugin: dict, prev: dict | None, pass_fds=()) -> dict | None:
    exe = find_plugin(plugin["type"])
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
           "CNI_IFNAME": att.ifname, "CNI_ARGS": att.args(), "CNI_PATH": ":".join(plugin_path()),
           "PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        r = subprocess.run([exe], input=_stdin(att, plugin, prev), env=env, capture_output=True,
                           pass_fds=pass_fds, timeout=60)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"network {att.net.name}: CNI plugin {plugin['type']} {command} did not "
                           "finish in 60 s") from None
    if r.returncode != 0:
        raise NetworkError(f"network {att.net.name}: CNI plugin {plugin['type']} {command}: {_message(r)}")
    if command != "ADD":
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise NetworkError(f"network {att.net.name}: CNI plugin {plugin['type']} printed no result") from None


def _message(r) -> str:
    try:
        err = json.loads(r.stdout)
        msg = err.get("msg") or "failed"
        if err.get("details"):
            msg += f" ({err['details']})"
    except (ValueError, AttributeError):
        msg = (r.stderr or r.stdout).decode(errors="replace").strip() or f"exit status {r.returncode}"
    return " ".join(msg.split())


def add(att: Attachment, pass_fds=()) -> dict:
    """ADD down the list; on a failure, DEL of the whole list (the plugins undo
    what they did) and the error. Returns the final result."""
    prev = None
    try:
        for plugin in _plugins(att):
            prev = _run(att, "ADD", plugin, prev, pass_fds)
    except BaseException:
        try:
            delete(att, prev, pass_fds)
        except NetworkError:
            pass
        raise
    return prev or {}


def delete(att: Attachment, prev: dict | None = None, pass_fds=()) -> None:
    """DEL up the list (every plugin, even after one failed; the first error is
    raised at the end). Safe to repeat, and with the namespace gone."""
    first = None
    for plugin in reversed(_plugins(att)):
        try:
            _run(att, "DEL", plugin, prev, pass_fds)
        except NetworkError as e:
            first = first or e
    if first is not None:
        raise first
