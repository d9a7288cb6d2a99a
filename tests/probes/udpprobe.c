/* UDP for the network tests (busybox has no UDP client or server):
 *   udpprobe serve PORT        answer each datagram with "echo:" + it, forever
 *   udpprobe send HOST PORT MSG  send MSG to HOST (a name or an address), print the
 *                              answer; exit 1 when none comes (5 tries, 1 s apart)
 *   udpprobe resolve HOST      print HOST's IPv4 addresses, as getaddrinfo finds them */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int lookup(const char *host, const char *port, struct sockaddr_in *out)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(out, res->ai_addr, sizeof *out);
    freeaddrinfo(res);
    return 0;
}

int main(int argc, char **argv)
{
    char buf[2048];
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)atoi(argv[2]));
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
            perror("bind");
            return 1;
        }
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(s, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&peer, &len);
            if (n < 0)
                continue;
            memcpy(buf, "echo:", 5);
            sendto(s, buf, (size_t)n + 5, 0, (struct sockaddr *)&peer, len);
            printf("from %s\n", inet_ntoa(peer.sin_addr));
            fflush(stdout);
        }
    }
    if (argc == 5 && strcmp(argv[1], "send") == 0) {
        struct sockaddr_in a;
        if (lookup(argv[2], argv[3], &a) < 0)
            return 2;
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct timeval tv = {1, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (int i = 0; i < 5; i++) {
            sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&a, sizeof a);
            ssize_t n = recv(s, buf, sizeof buf - 1, 0);
            if (n >= 0) {
                buf[n] = '\0';
                printf("%s\n", buf);
                return 0;
            }
        }
        fprintf(stderr, "no answer from %s\n", argv[2]);
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "resolve") == 0) {
        struct addrinfo hints, *res, *p;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(argv[2], NULL, &hints, &res);
        if (rc != 0) {
            fprintf(stderr, "getaddrinfo %s: %s\n", argv[2], gai_strerror(rc));
            return 2;
        }
        for (p = res; p; p = p->ai_next)
            printf("%s\n", inet_ntoa(((struct sockaddr_in *)p->ai_addr)->sin_addr));
        freeaddrinfo(res);
        return 0;
    }
    fprintf(stderr, "usage: udpprobe serve PORT | send HOST PORT MSG | resolve HOST\n");
    return 2;
}
