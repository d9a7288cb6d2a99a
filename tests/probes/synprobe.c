/* synprobe IFACE SRC_IP DST_IP PORT: send TCP SYNs as raw Ethernet frames out of
 * IFACE (to the broadcast MAC), from SRC_IP to DST_IP:PORT, bypassing the
 * container's own routing (which refuses loopback and 0.0.0.0 destinations on
 * a non-loopback link). What a root process in a container on slirp4netns can
 * hand slirp4netns directly: the attack on the host's loopback the tests try.
 * Prints "sent N" and exits 0, or names what failed and exits 1. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
    const uint8_t *p = data;
    for (; len > 1; p += 2, len -= 2)
        sum += (uint32_t)(p[0] << 8 | p[1]);
    if (len)
        sum += (uint32_t)(p[0] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: synprobe IFACE SRC_IP DST_IP PORT\n");
        return 2;
    }
    struct in_addr src, dst;
    if (inet_pton(AF_INET, argv[2], &src) != 1 || inet_pton(AF_INET, argv[3], &dst) != 1) {
        fprintf(stderr, "synprobe: bad address\n");
        return 2;
    }
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (s < 0) {
        perror("synprobe: socket(AF_PACKET)");
        return 1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", argv[1]);
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
        perror("synprobe: SIOCGIFHWADDR");
        return 1;
    }
    unsigned char frame[sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct tcphdr)];
    memset(frame, 0, sizeof frame);
    struct ether_header *eh = (struct ether_header *)frame;
    memset(eh->ether_dhost, 0xff, ETH_ALEN);
    memcpy(eh->ether_shost, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    eh->ether_type = htons(ETH_P_IP);
    struct iphdr *ip = (struct iphdr *)(frame + sizeof *eh);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
    ip->id = htons(4242);
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = src.s_addr;
    ip->daddr = dst.s_addr;
    ip->check = csum(ip, sizeof *ip, 0);
    struct tcphdr *th = (struct tcphdr *)(ip + 1);
    th->source = htons(40000 + (uint16_t)(getpid() % 20000));
    th->dest = htons((uint16_t)atoi(argv[4]));
    th->seq = htonl(12345);
    th->doff = 5;
    th->syn = 1;
    th->window = htons(65535);
    struct {
        uint32_t src, dst;
        uint8_t zero, proto;
        uint16_t len;
    } __attribute__((packed)) pseudo = {ip->saddr, ip->daddr, 0, IPPROTO_TCP, htons(sizeof *th)};
    uint32_t sum = 0;
    const uint8_t *pp = (const uint8_t *)&pseudo;
    for (size_t i = 0; i < sizeof pseudo; i += 2)
        sum += (uint32_t)(pp[i] << 8 | pp[i + 1]);
    th->check = csum(th, sizeof *th, sum);
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = (int)if_nametoindex(argv[1]);
    to.sll_halen = ETH_ALEN;
    memset(to.sll_addr, 0xff, ETH_ALEN);
    int sent = 0;
    for (int i = 0; i < 3; i++) {
        if (sendto(s, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("synprobe: sendto");
            return 1;
        }
        sent++;
        usleep(200000);
    }
    printf("sent %d\n", sent);
    return 0;
}
