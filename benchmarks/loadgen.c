/* loadgen: a single-threaded epoll load generator for line echo servers.
 *
 * Built at run time by benchmarks/_build.py (cc -O2); benchmarks/loadgen.py is
 * the Python fallback with the same command line and output.
 *
 *   loadgen MODE HOST PORT [conns=N] [size=B] [duration=S] [warmup=S] [window=B]
 *                          [count=N] [drain=S] [interval=S]
 *
 * Modes:
 *   pingpong  N connections, each sends one line of `size` bytes (LF included)
 *             and waits for its echo before sending the next: requests/s and
 *             latency percentiles.
 *   stream    N connections (usually 1) keep up to `window` bytes of lines in
 *             flight (pipelined small lines, or bulk with 64 KiB lines): MB/s.
 *   connrate  N concurrent workers, each: connect, one echo, close, repeat:
 *             connections/s.
 *   idle      open N connections (one echo each), print "IDLE n", then hold
 *             them until stdin reaches end of file.
 *   slow      as idle, but while holding them each connection sends the next
 *             byte of its stream every `interval` seconds (the connections
 *             take turns, evenly spread), and the echoes are checked.
 *
 * `count=N` ends the measured phase early once N requests (connrate: cycles)
 * were counted. `drain=S` (pingpong, slow) waits up to S seconds at the end for
 * the replies still owed, sending nothing new: then "unanswered" (connections
 * still open that miss part of an echo: pingpong, of the current request;
 * slow, of a complete line sent) is 0 when every echo came back;
 * "requests" and "replies" count the whole run, setup and warm-up included.
 *
 * Every mode first connects all its connections (at most 64 connecting at a
 * time) and completes one echo on each, so that accept loops are not starved
 * by established traffic; then it runs `warmup` seconds unmeasured, prints
 * "START", measures `duration` seconds, prints "END" and finally one JSON line.
 * Echoed bytes are compared with what was sent: a mismatch counts as an error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_PINGPONG, MODE_STREAM, MODE_CONNRATE, MODE_IDLE, MODE_SLOW };
enum { PHASE_SETUP, PHASE_WARMUP, PHASE_MEASURE, PHASE_DONE };
enum { MAX_CONNECTING = 64, READ_SIZE = 256 * 1024 };

typedef struct {
    int fd;
    int established;     /* first echo completed */
    int want_out;        /* EPOLLOUT registered */
    int connected;
    uint64_t sent;       /* stream: total bytes written; pingpong: bytes of this request */
    uint64_t recvd;      /* stream: total bytes read; pingpong: bytes of this reply */
    uint64_t t0;         /* pingpong: request start (ns) */
} conn_t;

static int mode;
static int phase = PHASE_SETUP;
static long nconns = 1;
static long size = 64;
static double duration = 2.0, warmup = 0.5;
static long window = 256 * 1024;
static long max_count = 0;       /* 0: no limit */
static double drain = 0.0, interval = 0.5;
static struct sockaddr_in addr;
static int ep;
static conn_t *conns;
static char *pattern;   /* `plen` bytes of lines of `size` bytes */
static long plen;
static char *rbuf;

static uint64_t count, bytes_measured, errors, connect_errors, established, requests, replies, slow_sent;
static uint32_t *lat;   /* latencies in ns (capped) */
static size_t nlat, caplat;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void set_events(conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_out != out) {
        c->want_out = out;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    }
}

static int open_conn(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    return 0;
}

static void close_conn(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

/* Write what the connection owes; returns -1 on a dead connection. */
static int pump_out(conn_t *c) {
    for (;;) {
        const char *p;
        long n;
        if (mode == MODE_STREAM && c->established && phase != PHASE_SETUP) {
            long inflight = (long)(c->sent - c->recvd);
            if (inflight >= window) break;
            long off = (long)(c->sent % (uint64_t)plen);
            n = plen - off;
            if (n > window - inflight) n = window - inflight;
            p = pattern + off;
        } else {
            if ((long)c->sent >= size) break;
            p = pattern + c->sent;
            n = size - (long)c->sent;
        }
        ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                set_events(c, 1);
                return 0;
            }
            return -1;
        }
        c->sent += (uint64_t)w;
    }
    set_events(c, 0);
    return 0;
}

static void start_request(conn_t *c) {
    requests++;
    c->sent = 0;
    c->recvd = 0;
    c->t0 = now_ns();
}

static void record_latency(uint64_t ns) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* slow: send the next byte of each connection's stream in turn, `interval`
 * seconds apart per connection; `slow_tick` counts the bytes due so far. */
static uint64_t slow_start, slow_tick;

static uint64_t slow_due(uint64_t tick) {
    return slow_start + (uint64_t)((double)tick * interval * 1e9 / (double)nconns);
}

static void slow_send_due(uint64_t t) {
    while (slow_due(slow_tick) <= t) {
        conn_t *c = &conns[slow_tick % (uint64_t)nconns];
        slow_tick++;
        if (c->fd < 0 || !c->established) continue;
        ssize_t w = send(c->fd, pattern + (c->sent % (uint64_t)plen), 1, MSG_NOSIGNAL);
        if (w == 1) {
            c->sent++;
            slow_sent++;
        } else if (w < 0 && errno != EAGAIN) {
            errors++;
            close_conn(c);
        }
    }
}

static long connecting;  /* connections opened whose first echo has not completed */
static long next_open;   /* next connection slot to open during setup */

static void first_echo_done(conn_t *c) {
    c->established = 1;
    established++;
    connecting--;
}

/* A connection failed: during setup or in connrate it is replaced. */
static void conn_failed(conn_t *c, int is_connect) {
    close_conn(c);
    if (is_connect) connect_errors++; else errors++;
    if (!c->established) connecting--;
    if (mode == MODE_CONNRATE && phase != PHASE_DONE) {
        if (open_conn(c) == 0) connecting++;
        else connect_errors++;
    }
}

static void on_reply_complete(conn_t *c) {
    replies++;
    if (!c->established) first_echo_done(c);
    if (mode == MODE_CONNRATE) {
        if (phase == PHASE_MEASURE) count++;
        close_conn(c);
        if (phase != PHASE_SETUP && phase != PHASE_DONE) {
            if (open_conn(c) == 0) connecting++;
            else connect_errors++;
        }
        return;
    }
    if (mode == MODE_PINGPONG && phase == PHASE_MEASURE) {
        count++;
        bytes_measured += (uint64_t)size;
        record_latency(now_ns() - c->t0);
    }
    if (mode == MODE_PINGPONG && phase != PHASE_SETUP && phase != PHASE_DONE) {
        start_request(c);
        if (pump_out(c) < 0) conn_failed(c, 0);
    }
}

static void on_readable(conn_t *c) {
    ssize_t r = recv(c->fd, rbuf, READ_SIZE, 0);
    if (r <= 0) {
        if (r < 0 && errno == EAGAIN) return;
        conn_failed(c, 0);
        return;
    }
    uint64_t base = c->recvd;
    /* Compare with what was sent: the stream repeats `pattern`. */
    long off = (long)(base % (uint64_t)plen);
    long done = 0;
    while (done < r) {
        long n = plen - off;
        if (n > r - done) n = r - done;
        if (memcmp(rbuf + done, pattern + off, (size_t)n) != 0) {
            errors++;
            conn_failed(c, 0);
            return;
        }
        done += n;
        off = 0;
    }
    c->recvd += (uint64_t)r;
    if (mode == MODE_SLOW) {
        if (!c->established && c->recvd >= (uint64_t)size) {
            replies++;
            first_echo_done(c);
        }
        return;
    }
    if (mode == MODE_STREAM) {
        if (phase == PHASE_MEASURE) bytes_measured += (uint64_t)r;
        if (!c->established && c->recvd >= (uint64_t)size) {
            first_echo_done(c);
            /* setup: nothing more is sent until the warm-up starts */
        }
        if (c->established && phase != PHASE_SETUP && pump_out(c) < 0) conn_failed(c, 0);
        return;
    }
    if (c->recvd > (uint64_t)size) {  /* more than one reply: a protocol error */
        errors++;
        conn_failed(c, 0);
        return;
    }
    if (c->recvd == (uint64_t)size) on_reply_complete(c);
}

static void on_writable(conn_t *c) {
    if (!c->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_failed(c, 1);
            return;
        }
        c->connected = 1;
        start_request(c);
    }
    if (pump_out(c) < 0) conn_failed(c, 0);
}

static void open_more(void) {
    while (next_open < nconns && connecting < MAX_CONNECTING) {
        if (open_conn(&conns[next_open]) < 0) {
            connect_errors++;
            if (connect_errors > 1000) die("connect");
            continue;
        }
        next_open++;
        connecting++;
    }
}

static int stdin_eof(void) {
    char b[256];
    ssize_t r = read(0, b, sizeof b);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
}

static long parse_opt(const char *arg, const char *key, long dflt) {
    size_t k = strlen(key);
    return strncmp(arg, key, k) == 0 && arg[k] == '=' ? atol(arg + k + 1) : dflt;
}

static double parse_dopt(const char *arg, const char *key, double dflt) {
    size_t k = strlen(key);
    return strncmp(arg, key, k) == 0 && arg[k] == '=' ? atof(arg + k + 1) : dflt;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(double p) {
    if (!nlat) return 0;
    size_t i = (size_t)(p * (double)(nlat - 1));
    return lat[i] / 1000.0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: loadgen pingpong|stream|connrate|idle|slow HOST PORT [conns=N] [size=B] "
                        "[duration=S] [warmup=S] [window=B] [count=N] [drain=S] [interval=S]\n");
        return 2;
    }
    const char *modes[] = {"pingpong", "stream", "connrate", "idle", "slow"};
    mode = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(argv[1], modes[i]) == 0) mode = i;
    if (mode < 0) {
        fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
        return 2;
    }
    for (int i = 4; i < argc; i++) {
        nconns = parse_opt(argv[i], "conns", nconns);
        size = parse_opt(argv[i], "size", size);
        window = parse_opt(argv[i], "window", window);
        duration = parse_dopt(argv[i], "duration", duration);
        warmup = parse_dopt(argv[i], "warmup", warmup);
        max_count = parse_opt(argv[i], "count", max_count);
        drain = parse_dopt(argv[i], "drain", drain);
        interval = parse_dopt(argv[i], "interval", interval);
    }
    if (nconns < 1 || size < 2 || window < size || interval <= 0) {
        fprintf(stderr, "loadgen: need conns >= 1, size >= 2, window >= size, interval > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: HOST must be an IPv4 address\n");
        return 2;
    }
    /* The pattern: lines of `size` bytes ("0123..." then LF), at least 256 KiB. */
    long lines = (256 * 1024 + size - 1) / size;
    plen = lines * size;
    pattern = malloc((size_t)plen);
    rbuf = malloc(READ_SIZE);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!pattern || !rbuf || !conns) die("malloc");
    for (long i = 0; i < plen; i++) pattern[i] = (i % size == size - 1) ? '\n' : (char)('a' + (i % size) % 26);
    for (long i = 0; i < nconns; i++) conns[i].fd = -1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    if (mode == MODE_IDLE || mode == MODE_SLOW) fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

    struct epoll_event evs[512];
    uint64_t setup_start = now_ns(), phase_end = 0, measure_start = 0, measure_end = 0;
    double cpu_start = 0, cpu_end = 0;
    const uint64_t setup_limit = 60ull * 1000000000ull;
    open_more();
    while (phase != PHASE_DONE) {
        int timeout_ms = 50;
        if (mode == MODE_SLOW && phase == PHASE_WARMUP) {
            /* wake for the next byte due (1 ms granularity: a few bytes per wake-up) */
            uint64_t due = slow_due(slow_tick), t0 = now_ns();
            timeout_ms = due <= t0 ? 0 : (int)((due - t0) / 1000000u) + 1;
            if (timeout_ms > 50) timeout_ms = 50;
        }
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) {  /* stdin (idle mode) */
                if (stdin_eof()) phase = PHASE_DONE;
                continue;
            }
            uint32_t e = evs[i].events;
            if (c->fd >= 0 && (e & EPOLLOUT)) on_writable(c);
            if (c->fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                if (!c->connected && (e & (EPOLLERR | EPOLLHUP)))
                    conn_failed(c, 1);
                else
                    on_readable(c);
            }
        }
        uint64_t t = now_ns();
        if (phase == PHASE_SETUP) {
            open_more();
            /* idle/connrate: failed connections are re-opened by open_more's index only once */
            if (next_open >= nconns && connecting <= 0) {
                if (mode == MODE_IDLE || mode == MODE_SLOW) {
                    printf("IDLE %llu\n", (unsigned long long)established);
                    fflush(stdout);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
                    phase = PHASE_WARMUP;  /* holding */
                    phase_end = UINT64_MAX;
                    slow_start = now_ns();
                    continue;
                }
                phase = PHASE_WARMUP;
                phase_end = t + (uint64_t)(warmup * 1e9);
                for (long k = 0; k < nconns; k++) {
                    conn_t *c = &conns[k];
                    if (mode == MODE_CONNRATE) {  /* setup closed them all: start the workers */
                        close_conn(c);
                        if (open_conn(c) == 0) connecting++;
                        else connect_errors++;
                        continue;
                    }
                    if (c->fd < 0) continue;
                    if (mode == MODE_PINGPONG) {
                        start_request(c);
                        if (pump_out(c) < 0) conn_failed(c, 0);
                    } else if (mode == MODE_STREAM) {
                        if (pump_out(c) < 0) conn_failed(c, 0);
                    }
                }
            } else if (t - setup_start > setup_limit) {
                fprintf(stderr, "loadgen: setup did not finish (%llu of %ld established)\n",
                        (unsigned long long)established, nconns);
                return 3;
            }
        } else if (mode == MODE_SLOW && phase == PHASE_WARMUP) {
            slow_send_due(t);
        } else if (phase == PHASE_WARMUP && t >= phase_end) {
            phase = PHASE_MEASURE;
            measure_start = t;
            cpu_start = cpu_seconds();
            phase_end = t + (uint64_t)(duration * 1e9);
            printf("START\n");
            fflush(stdout);
        } else if (phase == PHASE_MEASURE && (t >= phase_end || (max_count > 0 && count >= (uint64_t)max_count))) {
            measure_end = t;
            cpu_end = cpu_seconds();
            printf("END\n");
            fflush(stdout);
            phase = PHASE_DONE;
        }
    }
    /* drain: nothing new is sent (phase DONE); wait for the replies still owed
     * (pingpong: the current request's; slow: every complete line's echo) */
    uint64_t drain_end = now_ns() + (uint64_t)(drain * 1e9);
    long unanswered = 0;
    for (;;) {
        unanswered = 0;
        for (long k = 0; k < nconns; k++) {
            conn_t *c = &conns[k];
            if (c->fd < 0) continue;
            if (mode == MODE_PINGPONG && c->recvd < (uint64_t)size) unanswered++;
            if (mode == MODE_SLOW && c->recvd < c->sent / (uint64_t)size * (uint64_t)size) unanswered++;
        }
        if (unanswered == 0 || now_ns() >= drain_end) break;
        int n = epoll_wait(ep, evs, 512, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) continue;  /* stdin */
            uint32_t e = evs[i].events;
            if (c->fd >= 0 && (e & EPOLLOUT)) on_writable(c);
            if (c->fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
        }
    }
    if (mode == MODE_IDLE) {
        printf("{\"mode\": \"idle\", \"conns\": %ld, \"established\": %llu, \"connect_errors\": %llu}\n",
               nconns, (unsigned long long)established, (unsigned long long)connect_errors);
        return 0;
    }
    if (mode == MODE_SLOW) {
        uint64_t echoed = 0;
        for (long k = 0; k < nconns; k++)
            if (conns[k].recvd > (uint64_t)size) echoed += conns[k].recvd - (uint64_t)size;
        printf("{\"mode\": \"slow\", \"conns\": %ld, \"established\": %llu, \"connect_errors\": %llu, "
               "\"errors\": %llu, \"bytes_sent\": %llu, \"bytes_echoed\": %llu, \"unanswered\": %ld}\n",
               nconns, (unsigned long long)established, (unsigned long long)connect_errors,
               (unsigned long long)errors, (unsigned long long)slow_sent, (unsigned long long)echoed, unanswered);
        return 0;
    }
    double secs = (double)(measure_end - measure_start) / 1e9;
    if (mode == MODE_STREAM) count = bytes_measured / (uint64_t)size;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    printf("{\"mode\": \"%s\", \"conns\": %ld, \"size\": %ld, \"seconds\": %.6f, \"count\": %llu, "
           "\"rate\": %.1f, \"mbps\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"errors\": %llu, "
           "\"connect_errors\": %llu, \"established\": %llu, \"loadgen_cpu\": %.4f, "
           "\"requests\": %llu, \"replies\": %llu, \"unanswered\": %ld}\n",
           modes[mode], nconns, size, secs, (unsigned long long)count, (double)count / secs,
           (double)(mode == MODE_STREAM ? bytes_measured : count * (uint64_t)size) / secs / 1e6,
           percentile_us(0.50), percentile_us(0.99), (unsigned long long)errors,
           (unsigned long long)connect_errors, (unsigned long long)established,
           (cpu_end - cpu_start) / secs, (unsigned long long)requests, (unsigned long long)replies,
           unanswered);
    return 0;
}
