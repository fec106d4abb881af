// uws-room is uWebSockets' pub/sub as a fan-out peer of wsloop-room: one
// topic, "all", that every connection subscribes to when it opens; every
// message a connection sends is published to "all" with its opcode, sender
// included (the App's publish, app.publish("all", message, opCode); a
// WebSocket's own ws->publish would leave the sender out). It is the same
// protocol as servers/wsloop-room, so cmd/fanout drives it unchanged.
//
// It is our own file: nothing of uWebSockets or uSockets is in this
// repository. cmd/bench builds it from checkouts named by the environment,
// and skips it when UWS_DIR is not set:
//
//	git clone https://github.com/uNetworking/uWebSockets /path/uWebSockets
//	git clone https://github.com/uNetworking/uSockets /path/uSockets   # or: git -C /path/uWebSockets submodule update --init uSockets
//	cd benchmarks && UWS_DIR=/path/uWebSockets USOCKETS_DIR=/path/uSockets \
//	    go run ./cmd/bench -scenarios fanout -servers wsloop-room,uws-room
//
// USOCKETS_DIR defaults to $UWS_DIR/uSockets (the submodule). The bench
// compiles uSockets' C sources as uSockets' Makefile does, with
// -DLIBUS_NO_SSL (plain TCP), and this file with -DUWS_NO_ZLIB, both -O3
// -march=native -flto (as uWebSockets' build.c builds its examples), and
// records both checkouts' commits in the report. By hand, in an empty
// directory:
//
//	gcc -O3 -march=native -flto -std=c11 -DLIBUS_NO_SSL -I$USOCKETS_DIR/src -c $USOCKETS_DIR/src/*.c $USOCKETS_DIR/src/eventing/*.c $USOCKETS_DIR/src/crypto/*.c $USOCKETS_DIR/src/io_uring/*.c
//	g++ -O3 -march=native -flto -std=c++2b -DLIBUS_NO_SSL -DUWS_NO_ZLIB -I$UWS_DIR/src -I$USOCKETS_DIR/src main.cpp *.o -o uws-room
//
// Settings, chosen to match wsloop-room's: no compression
// (uWS::DISABLED), messages up to 1 MiB, 4 MiB of backpressure per
// connection (wsloop-room's outbound cap; closeOnBackpressureLimit false,
// so beyond it uWebSockets drops messages, which cmd/fanout reports as
// gaps), no idle timeout and no automatic pings (wsloop-room pings every
// hour: the fan-out runs last minutes).
//
// Flags, as the Go servers take them: -addr HOST:PORT (default
// 127.0.0.1:0; port 0 picks a free port) and -loops N, accepted and
// ignored: uWebSockets runs one event loop on one thread. Once listening
// it prints "READY HOST:PORT" on stdout. It exits 0 on SIGINT or SIGTERM.
//
// Like every server of the suite (benchmarks/internal/mallocs) it answers
// SIGUSR1 with a line "MALLOCS <n>": n is the heap allocations made so
// far, counted here by wrapping glibc's malloc, calloc, realloc and the
// aligned allocators (C++'s operator new goes through malloc), where the
// Go servers report runtime.MemStats.Mallocs.
#include "App.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

// The allocation count. The server is one thread; relaxed is enough.
static std::atomic<unsigned long long> allocations{0};

extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);

void *malloc(size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
    if (!p) {
        allocations.fetch_add(1, std::memory_order_relaxed);
    }
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    allocations.fetch_add(1, std::memory_order_relaxed);
    void *p = __libc_memalign(align, n);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}
}

// writeAll writes a whole buffer with write(2): async-signal-safe.
static void writeAll(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        p += w;
        n -= (size_t) w;
    }
}

// onSignal answers SIGUSR1 with the MALLOCS line and ends the process on
// SIGINT and SIGTERM. It runs on the loop's thread between two
// instructions of whatever the loop was doing: it only reads the counter
// and calls write and _exit. Nothing else writes to stdout after READY.
static void onSignal(int sig) {
    if (sig != SIGUSR1) {
        _exit(0);
    }
    int saved = errno;
    char line[64] = "MALLOCS ";
    char digits[24];
    int nd = 0;
    unsigned long long v = allocations.load(std::memory_order_relaxed);
    do {
        digits[nd++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v > 0);
    size_t n = 8;
    while (nd > 0) {
        line[n++] = digits[--nd];
    }
    line[n++] = '\n';
    writeAll(1, line, n);
    errno = saved;
}

static void usage(const char *why) {
    fprintf(stderr, "uws-room: %s\nusage: uws-room [-addr HOST:PORT] [-loops N]\n", why);
    exit(2);
}

int main(int argc, char **argv) {
    std::string addr = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        // -name value, -name=value, --name value, --name=value (as Go's flag package).
        std::string a = argv[i];
        if (a.rfind("--", 0) == 0) {
            a = a.substr(1);
        }
        std::string name = a, value;
        bool hasValue = false;
        if (size_t eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
            hasValue = true;
        }
        if (name != "-addr" && name != "-loops") {
            usage(("unknown flag " + std::string(argv[i])).c_str());
        }
        if (!hasValue) {
            if (i + 1 >= argc) {
                usage(("flag needs a value: " + name).c_str());
            }
            value = argv[++i];
        }
        if (name == "-addr") {
            addr = value;
        } else {
            char *end = nullptr;
            long loops = strtol(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0' || loops < 1) {
                usage(("bad -loops " + value).c_str());
            }
            // One event loop, one thread, whatever -loops says.
        }
    }
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) {
        usage(("bad -addr " + addr + ": want HOST:PORT").c_str());
    }
    std::string host = addr.substr(0, colon);
    char *end = nullptr;
    long port = strtol(addr.c_str() + colon + 1, &end, 10);
    if (colon + 1 == addr.size() || *end != '\0' || port < 0 || port > 65535) {
        usage(("bad port in -addr " + addr).c_str());
    }

    // Tens of thousands of connections: raise the descriptor limit to the
    // hard one, as Go's runtime does for the Go servers.
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = onSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGUSR1, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    struct PerSocketData {};
    uWS::App app;
    uWS::App *appp = &app;
    app.ws<PerSocketData>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 1024 * 1024,
        .idleTimeout = 0,
        .maxBackpressure = 4 * 1024 * 1024,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .open = [](auto *ws) {
            ws->subscribe("all");
        },
        .message = [appp](auto * /*ws*/, std::string_view message, uWS::OpCode opCode) {
            appp->publish("all", message, opCode);
        },
    });

    bool listening = false;
    app.listen(host, (int) port, [&](us_listen_socket_t *ls) {
        if (!ls) {
            return;
        }
        listening = true;
        int p = us_socket_local_port(0, (struct us_socket_t *) ls);
        printf("READY %s:%d\n", host.c_str(), p);
        fflush(stdout);
    });
    if (!listening) {
        fprintf(stderr, "uws-room: cannot listen on %s\n", addr.c_str());
        return 1;
    }
    app.run();
    return 0;
}
