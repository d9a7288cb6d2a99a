"""Networks: containers that talk to each other and to the outside, as docker's
bridge networks do, wired by the CNI reference plugins.

- `model`: `Runtime(root).networks` (docker SDK names: create, get, list, prune;
  a Network has connect, disconnect, remove, reload), kept in the store's
  `networks` table; the default network, "bridge", is made on first use.
- `ipam`: subnets (given, or picked from pyrt's pool away from the host's routes)
  and addresses, allocated in the store (table `endpoints`), one transaction each.
- `cni`: the conflist of a network and the plugin calls (ADD, DEL) as the CNI
  spec says: `bridge` with `static` IPAM (the address pyrt allocated), `portmap`
  for published ports.
- `firewall`: the few rules a network needs once, not per container (outbound
  NAT, isolation between networks, --internal), in chains of pyrt's own.
- `netns`: a container's network namespace, made before it and joined by it.
- `endpoints`: what containers call: wire a container before its start, unwire
  it when it ends or is removed, connect and disconnect a running one, and undo
  what a killed pyrt process left (reconcile).
- `dns`: the name server of user-defined networks (container names and aliases;
  other names forwarded to the host's resolvers).
- `usermode`: network mode "slirp4netns", a private network with outbound access
  through slirp4netns, for an ordinary user (who cannot make bridges): its default.
"""
