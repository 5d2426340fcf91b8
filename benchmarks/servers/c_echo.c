/* c_echo: a minimal epoll echo server, the practical limit of the machine.
 *
 *   c_echo PORT        (0 = ephemeral; prints "READY <port>" once listening on 127.0.0.1)
 *
 * It echoes bytes as they come (a line echo needs nothing more when clients send
 * whole lines). Level-triggered epoll, one read and one write per event; a reply
 * the socket cannot take at once is kept and reading pauses until it is written.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF_SIZE = 256 * 1024 };

typedef struct {
    int fd;
    char *pending;  /* bytes the socket did not take yet (NULL when none) */
    size_t len, off;
} conn_t;

static int ep;
static char buf[BUF_SIZE];

static void watch(conn_t *c, int op, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

static void drop(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void flush(conn_t *c) {
    while (c->off < c->len) {
        ssize_t w = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) drop(c);
            return;
        }
        c->off += (size_t)w;
    }
    free(c->pending);
    c->pending = NULL;
    c->len = c->off = 0;
    watch(c, EPOLL_CTL_MOD, EPOLLIN);
}

static void on_read(conn_t *c) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r <= 0) {
        if (r == 0 || errno != EAGAIN) drop(c);
        return;
    }
    ssize_t w = send(c->fd, buf, (size_t)r, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN) {
            drop(c);
            return;
        }
        w = 0;
    }
    if (w < r) {
        c->len = (size_t)(r - w);
        c->off = 0;
        c->pending = malloc(c->len);
        if (!c->pending) {
            drop(c);
            return;
        }
        memcpy(c->pending, buf + w, c->len);
        watch(c, EPOLL_CTL_MOD, EPOLLOUT);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("c_echo: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("READY %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    watch(nc, EPOLL_CTL_ADD, EPOLLIN);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                flush(c);
            else
                on_read(c);
        }
    }
}
