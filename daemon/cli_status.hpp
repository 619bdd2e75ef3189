#pragma once

// The subcommands that ask a running daemon over its control socket (status,
// nodes, node, events, plan --daemon, sync, suspend, resume, version) and the
// text rendering of its replies. Rendering is a pure function of a reply's
// arguments and the current time, and tolerates missing or mistyped fields:
// an older or newer daemon still gets a readable table.
//
// Exit codes: 0 ok, 1 the daemon answered with an error or "empty",
// 2 the daemon could not be reached or the command line was wrong.
// `status` exits 0 even when nodes are failing: it reports, it does not judge.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace metalsync {

struct ClientOptions {
    std::string socket;  // empty: default_control_socket()
    std::string output = "text";
};

// $METALSYNC_SOCKET when set and not empty, else /run/metalsync/metalsync.sock.
std::string default_control_socket();

struct StatusOptions {
    ClientOptions client;
    bool watch = false;
    std::string interval = "1s";
    bool until_converged = false;  // implies watch
    std::string timeout;           // with until_converged; empty: wait forever
};

struct NodesOptions {
    ClientOptions client;
    std::string condition;
};

struct NodeOptions {
    ClientOptions client;
    std::string name;
};

struct EventsOptions {
    ClientOptions client;
    std::string object;
    std::string since;
    int limit = 0;
};

struct NodeActionOptions {
    ClientOptions client;
    std::string name;  // empty: every node
};

int run_status(const StatusOptions& options);
int run_nodes(const NodesOptions& options);
int run_node(const NodeOptions& options);
int run_events(const EventsOptions& options);
int run_daemon_plan(const ClientOptions& options);  // exit 0 no changes, 1 changes, 2 error
int run_sync(const ClientOptions& options);
int run_suspend(const NodeActionOptions& options, bool resume);
int run_version(const ClientOptions& options);  // always 0: the daemon's version is a bonus

// "2026-11-25 14:03:12" in local time.
std::string format_local_time(std::int64_t unix_seconds);
// "12s", "3m12s", "2h5m", "3d4h".
std::string format_duration(std::int64_t seconds);
// "3m12s ago" or "in 1m30s".
std::string format_relative(std::int64_t then, std::int64_t now);
// "500ms", "10s", "1h30m", "2d", or a bare number of seconds ("0.5", "90").
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// A duration back from now ("10m"), a local time ("2026-11-25", "2026-11-25 14:03[:12]",
// also with a 'T'), or "@<unix seconds>". Unix seconds.
std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now);

bool status_converged(const nlohmann::json& arguments);
std::string render_status(const nlohmann::json& arguments, std::string_view text, std::int64_t now);
std::string render_node_list(const nlohmann::json& arguments, std::string_view condition, std::int64_t now);
std::string render_node(const nlohmann::json& arguments, std::int64_t now);
// Filters client-side too (a daemon may ignore the request's filters), keeps
// the `limit` most recent, oldest first.
nlohmann::json filter_events(const nlohmann::json& arguments, std::string_view object, std::optional<std::int64_t> since,
                             int limit);
std::string render_events(const nlohmann::json& arguments, std::int64_t now);
std::string render_daemon_plan(const nlohmann::json& arguments);

} // namespace metalsync
