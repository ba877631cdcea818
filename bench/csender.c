/* The benchmarks' C sender (bench/peers.py): replays a pool of datagrams to 127.0.0.1,
 * paced, with sendmmsg, so that the sender is not what limits a receiver's figure.
 *
 *   csender [--sockets N] POOL PORT RATE COUNT MAX_SECONDS PROBE_EVERY
 *
 * --sockets N (default 1) sends from N sockets, each sendmmsg batch from the next one in
 * turn: N source ports, so the kernel's SO_REUSEPORT hash spreads them over a listener's
 * receiver processes (collector `receivers = K`), as N uWSGI instances would.
 *
 * POOL is a file of records, each a little-endian u16 length then that many bytes (one
 * datagram), written by bench/csender.py. The first COUNT records are sent once each, in
 * order, at RATE per second, paced in one-millisecond slices: each slice sends what the
 * rate owes by then, so a slow slice is caught up in the next. Sending stops after
 * MAX_SECONDS even if records remain (bounded in count and in time). Prints one JSON
 * document: {"sent", "errors", "seconds", "probes": {index: send time}} with the wall-clock
 * send time (seconds since the epoch) of every PROBE_EVERY-th record (0: none).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256
#define MAX_SOCKETS 256

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what) {
    fprintf(stderr, "csender: %s: %s\n", what, strerror(errno));
    return 2;
}

int main(int argc, char **argv) {
    long nsockets = 1;
    if (argc >= 3 && strcmp(argv[1], "--sockets") == 0) {
        nsockets = atol(argv[2]);
        argc -= 2;
        argv += 2;
    }
    if (argc != 7 || nsockets < 1 || nsockets > MAX_SOCKETS) {
        fprintf(stderr, "usage: csender [--sockets N (1-%d)] POOL PORT RATE COUNT "
                        "MAX_SECONDS PROBE_EVERY\n", MAX_SOCKETS);
        return 2;
    }
    const char *pool_path = argv[1];
    int port = atoi(argv[2]);
    double rate = atof(argv[3]);
    long count = atol(argv[4]);
    double max_seconds = atof(argv[5]);
    long probe_every = atol(argv[6]);
    if (port <= 0 || port > 65535 || rate <= 0 || count < 0 || max_seconds <= 0 ||
        probe_every < 0) {
        fprintf(stderr, "csender: bad arguments\n");
        return 2;
    }

    int fd = open(pool_path, O_RDONLY);
    if (fd < 0) return fail("open pool");
    struct stat st;
    if (fstat(fd, &st) < 0) return fail("stat pool");
    const unsigned char *pool = NULL;
    if (st.st_size > 0) {
        pool = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (pool == MAP_FAILED) return fail("mmap pool");
    }

    /* Index the records (start offset and length of each of the first COUNT). */
    struct iovec *iov = calloc(count ? (size_t)count : 1, sizeof *iov);
    if (!iov) return fail("calloc");
    long records = 0;
    size_t at = 0;
    while (records < count && at + 2 <= (size_t)st.st_size) {
        size_t len = (size_t)pool[at] | ((size_t)pool[at + 1] << 8);
        if (at + 2 + len > (size_t)st.st_size) break;
        iov[records].iov_base = (void *)(pool + at + 2);
        iov[records].iov_len = len;
        records++;
        at += 2 + len;
    }
    if (records < count) {
        fprintf(stderr, "csender: the pool holds %ld records, %ld asked\n", records, count);
        return 2;
    }

    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int socks[MAX_SOCKETS];
    for (long k = 0; k < nsockets; k++) {
        socks[k] = socket(AF_INET, SOCK_DGRAM, 0);
        if (socks[k] < 0) return fail("socket");
        int sndbuf = 4 << 20;
        setsockopt(socks[k], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (connect(socks[k], (struct sockaddr *)&to, sizeof to) < 0) return fail("connect");
    }
    long turn = 0;

    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    long sent = 0, errors = 0;
    long probes = probe_every ? (count + probe_every - 1) / probe_every : 0;
    double *probe_times = calloc(probes ? (size_t)probes : 1, sizeof *probe_times);
    if (!probe_times) return fail("calloc");

    double start = now(CLOCK_MONOTONIC), end = start;
    struct timespec slice = {0, 1000000};
    while (sent < count) {
        double elapsed = now(CLOCK_MONOTONIC) - start;
        if (elapsed >= max_seconds) break;
        long owed = (long)(rate * elapsed) + 1;
        if (owed > count) owed = count;
        while (sent < owed) {
            int n = (int)(owed - sent < BATCH ? owed - sent : BATCH);
            for (int i = 0; i < n; i++) {
                msgs[i].msg_hdr.msg_iov = &iov[sent + i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            double wall = now(CLOCK_REALTIME);
            int sock = socks[turn++ % nsockets];
            int done = sendmmsg(sock, msgs, (unsigned)n, 0);
            if (done <= 0) {
                /* Count the datagram that failed and go on past it: loss shows as a
                 * shortfall at the receiver, the count says the sender caused it. */
                errors++;
                done = 1;
            }
            if (probe_every) {
                for (long i = sent; i < sent + done; i++)
                    if (i % probe_every == 0) probe_times[i / probe_every] = wall;
            }
            sent += done;
        }
        end = now(CLOCK_MONOTONIC);
        if (sent < count) nanosleep(&slice, NULL);
    }

    printf("{\"sent\": %ld, \"errors\": %ld, \"seconds\": %.6f, \"probes\": {",
           sent - errors, errors, end - start);
    int first = 1;
    for (long i = 0; i < probes && i * probe_every < sent; i++) {
        printf("%s\"%ld\": %.6f", first ? "" : ", ", i * probe_every, probe_times[i]);
        first = 0;
    }
    printf("}}\n");
    return 0;
}
