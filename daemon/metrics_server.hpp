#pragma once

// The Prometheus scrape endpoint: a minimal HTTP/1.1 server on one thread.
//   GET /metrics  200, text exposition format 0.0.4 (HEAD too)
//   GET /healthz  200 "ok"
//   other paths   404; other methods on these paths 405
// Every response carries Connection: close; one request per connection.
//
// One thread multiplexes every connection with poll(), all sockets
// non-blocking, so a slow client costs a slot, never the thread: the request
// head must arrive whole within read_timeout and under max_request_bytes
// (else 408 / 431 and close), and a response must be taken within
// write_timeout. When max_connections are open the oldest is dropped for the
// newcomer, so a crowd of idle or slow-loris connections delays a scrape by
// nothing more than one accept. stop() wakes the thread through an eventfd.
//
// Threading: start/stop/rebind/port belong to one owner thread (the daemon
// loop); the render callback runs on the server thread and must be
// thread-safe (DaemonMetrics::render is).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace metalsync {

struct MetricsServerOptions {
    std::chrono::milliseconds read_timeout{5000};
    std::chrono::milliseconds write_timeout{10000};
    std::size_t max_request_bytes = 8192;
    std::size_t max_connections = 32;
};

struct ListenAddress {
    std::string host; // as written, without brackets: "127.0.0.1", "::1", "localhost"
    std::uint16_t port = 0;
    // "127.0.0.1:9460", "[::1]:9460"
    [[nodiscard]] std::string text() const;
};

// "host:port" or "[ipv6]:port"; port 0-65535 (0: any free port, for tests).
std::expected<ListenAddress, std::string> parse_listen_address(std::string_view text);

class MetricsServer {
public:
    using Render = std::function<std::string()>;

    MetricsServer(std::string listen, Render render, MetricsServerOptions options = {});
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Binds, listens and starts the thread. Errors name the address and the
    // cause ("127.0.0.1:9460: address already in use ...").
    std::expected<void, std::string> start();
    // Closes the listener and every connection, whatever state clients are
    // in: the thread is woken at once and joined. Idempotent; the destructor
    // calls it.
    void stop();
    // Moves to another address (config-reload). On failure the old address
    // keeps serving and the error says why. Works whether running or not.
    std::expected<void, std::string> rebind(const std::string& listen);

    [[nodiscard]] bool running() const { return m_listen_fd >= 0; }
    // The bound port (the real one when the address asked for port 0); 0 when stopped.
    [[nodiscard]] int port() const { return m_port; }
    [[nodiscard]] const std::string& listen() const { return m_listen; }

private:
    std::expected<int, std::string> open_listener(const std::string& listen, int& error_number) const;
    void launch(int listen_fd);
    void serve_loop();

    std::string m_listen;
    Render m_render;
    MetricsServerOptions m_options;
    int m_listen_fd = -1;
    int m_stop_fd = -1;
    int m_port = 0;
    std::thread m_thread;
};

} // namespace metalsync
