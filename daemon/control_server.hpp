#pragma once

// The daemon's control socket (docs/architecture.md §5): a Unix stream
// socket, one JSON request per connection and one JSON reply, then close.
// Every reply is well-formed JSON, including for malformed, oversized, slow or
// unauthorised requests and for handlers that throw.
//
// Threads: start() runs one accept thread; each connection gets a thread of
// its own, at most max_connections at once. When all are busy the accept
// thread stops accepting and further clients wait in the listen backlog until
// a slot frees (each slot is bounded by read_timeout plus the handler's run
// time), so a slow client delays nobody but itself. Handlers therefore run
// concurrently with each other and must be thread-safe.

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/control_protocol.hpp"

namespace metalsync {

struct ControlServerOptions {
    mode_t mode = 0660;
    // Peers whose primary or supplementary group is this one may run mutating
    // commands (besides root and the daemon's own uid). Also the socket's group.
    std::optional<gid_t> admin_group;
    std::chrono::milliseconds read_timeout{5000};
    std::size_t max_request_bytes = 64 * 1024;
    int max_connections = 32;
};

struct ControlCommandInfo {
    std::string name;
    std::string help;
    bool mutating = false;
};

class ControlServer {
public:
    explicit ControlServer(std::filesystem::path socket, ControlServerOptions options = {});
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Registers (or replaces) a command. May be called before or after start().
    // `mutating` commands are refused to peers that are not root, the daemon's
    // own uid or in admin_group. `list-commands` is built in.
    void add_command(const std::string& name, ControlHandler handler, bool mutating, std::string help);

    // Binds and listens. A socket file nobody answers on (left by a crash) is
    // replaced; a live one is not: "another metalsync is listening on PATH".
    // Creates the parent directory when missing.
    std::expected<void, std::string> start();

    // Stops accepting, waits for connections in progress to finish (they are
    // told to give up waiting for input), closes and unlinks the socket.
    // Idempotent; the destructor calls it.
    void stop();

    [[nodiscard]] const std::filesystem::path& socket_path() const { return m_socket; }
    [[nodiscard]] std::vector<ControlCommandInfo> commands() const;

    // What a connection does once it holds a parsed request: authorisation,
    // list-commands, dispatch, exceptions turned into result 1. Public so the
    // daemon and tests can run a command without a socket.
    ControlReply dispatch(const ControlRequest& request) const;

private:
    struct Command {
        ControlHandler handler;
        bool mutating = false;
        std::string help;
    };

    void accept_loop();
    void serve_connection(int fd);
    void connection_finished(std::uint64_t id);
    void reap_finished();
    [[nodiscard]] bool peer_may_mutate(const ControlRequest& request) const;
    [[nodiscard]] std::string who_may_mutate() const;

    std::filesystem::path m_socket;
    ControlServerOptions m_options;

    mutable std::mutex m_commands_mutex;
    std::map<std::string, Command> m_commands;

    int m_listen_fd = -1;
    int m_stop_fd = -1;  // eventfd: written once by stop(), never read; every poller sees it
    int m_reap_fd = -1;  // eventfd: a connection thread finished
    dev_t m_socket_dev = 0;
    ino_t m_socket_ino = 0;
    std::thread m_accept_thread;

    std::mutex m_connections_mutex;
    std::map<std::uint64_t, std::thread> m_connections;
    std::vector<std::uint64_t> m_finished;
    std::uint64_t m_next_connection_id = 0;
};

} // namespace metalsync
