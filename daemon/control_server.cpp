#include "daemon/control_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include <spdlog/spdlog.h>

namespace metalsync {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view k_list_commands = "list-commands";
// After an error reply to a request we did not read whole, keep reading (and
// discarding) a little so the client gets our reply instead of EPIPE.
constexpr std::chrono::milliseconds k_linger{250};
constexpr std::size_t k_linger_bytes = 1024 * 1024;

class FdGuard {
public:
    explicit FdGuard(int fd) : m_fd(fd) {}
    ~FdGuard()
    {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
    }
    FdGuard(const FdGuard&) = delete;
    FdGuard& operator=(const FdGuard&) = delete;
    [[nodiscard]] int get() const { return m_fd; }

private:
    int m_fd;
};

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string duration_text(std::chrono::milliseconds ms)
{
    if (ms.count() % 1000 == 0) {
        return std::to_string(ms.count() / 1000) + "s";
    }
    return std::to_string(ms.count()) + "ms";
}

struct ReadOutcome {
    enum class Kind { complete, eof, timeout, oversized, not_object, stopped, io_error };
    Kind kind = Kind::io_error;
    std::string body;
    int error = 0;
};

int remaining_ms(Clock::time_point deadline)
{
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

ReadOutcome read_request(int fd, int stop_fd, std::chrono::milliseconds timeout, std::size_t max_bytes)
{
    ReadOutcome outcome;
    ObjectScanner scanner;
    const auto deadline = Clock::now() + timeout;
    char chunk[16384];
    while (true) {
        pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        int left = remaining_ms(deadline);
        if (left == 0) {
            outcome.kind = ReadOutcome::Kind::timeout;
            return outcome;
        }
        int n = ::poll(fds, 2, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            outcome.kind = ReadOutcome::Kind::io_error;
            outcome.error = errno;
            return outcome;
        }
        if (n == 0) {
            continue;  // the deadline check above decides
        }
        if ((fds[1].revents & POLLIN) != 0) {
            outcome.kind = ReadOutcome::Kind::stopped;
            return outcome;
        }
        ssize_t got = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue;
            }
            outcome.kind = ReadOutcome::Kind::io_error;
            outcome.error = errno;
            return outcome;
        }
        if (got == 0) {
            outcome.kind = ReadOutcome::Kind::eof;
            return outcome;
        }
        outcome.body.append(chunk, static_cast<std::size_t>(got));
        auto status = scanner.feed(outcome.body);
        if (status == ObjectScanner::Status::not_object) {
            outcome.kind = ReadOutcome::Kind::not_object;
            return outcome;
        }
        if (status == ObjectScanner::Status::complete) {
            if (scanner.end() > max_bytes) {
                outcome.kind = ReadOutcome::Kind::oversized;
                return outcome;
            }
            outcome.body.resize(scanner.end());
            outcome.kind = ReadOutcome::Kind::complete;
            return outcome;
        }
        if (outcome.body.size() > max_bytes) {
            outcome.kind = ReadOutcome::Kind::oversized;
            return outcome;
        }
    }
}

bool write_all(int fd, int stop_fd, const std::string& data, std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return false;
        }
        int left = remaining_ms(deadline);
        if (left == 0) {
            return false;
        }
        pollfd fds[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
        if (::poll(fds, 2, left) < 0 && errno != EINTR) {
            return false;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            return false;
        }
    }
    return true;
}

void linger_discard(int fd, int stop_fd)
{
    ::shutdown(fd, SHUT_WR);
    const auto deadline = Clock::now() + k_linger;
    std::size_t discarded = 0;
    char chunk[16384];
    while (discarded < k_linger_bytes) {
        pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        int left = remaining_ms(deadline);
        if (left == 0 || ::poll(fds, 2, left) <= 0 || (fds[1].revents & POLLIN) != 0) {
            return;
        }
        ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            return;
        }
        discarded += static_cast<std::size_t>(n);
    }
}

// Supplementary groups of a process, from /proc/<pid>/status ("Groups: 4 27 100").
std::vector<gid_t> supplementary_groups(pid_t pid)
{
    std::vector<gid_t> groups;
    if (pid <= 0) {
        return groups;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("Groups:")) {
            std::istringstream fields(line.substr(7));
            unsigned long gid = 0;
            while (fields >> gid) {
                groups.push_back(static_cast<gid_t>(gid));
            }
            break;
        }
    }
    return groups;
}

std::string group_name(gid_t gid)
{
    group entry{};
    group* found = nullptr;
    std::vector<char> buf(16384);
    if (::getgrgid_r(gid, &entry, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
        return found->gr_name;
    }
    return std::to_string(gid);
}

} // namespace

ControlServer::ControlServer(fs::path socket, ControlServerOptions options)
    : m_socket(std::move(socket)), m_options(options)
{
    if (m_options.max_connections < 1) {
        m_options.max_connections = 1;
    }
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::add_command(const std::string& name, ControlHandler handler, bool mutating, std::string help)
{
    std::lock_guard lock(m_commands_mutex);
    m_commands[name] = Command{std::move(handler), mutating, std::move(help)};
}

std::vector<ControlCommandInfo> ControlServer::commands() const
{
    std::vector<ControlCommandInfo> out;
    out.push_back({std::string(k_list_commands), "List the commands this daemon answers", false});
    std::lock_guard lock(m_commands_mutex);
    for (const auto& [name, command] : m_commands) {
        if (name != k_list_commands) {
            out.push_back({name, command.help, command.mutating});
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
}

std::expected<void, std::string> ControlServer::start()
{
    if (m_listen_fd >= 0) {
        return std::unexpected("control socket " + m_socket.string() + " already started");
    }
    const std::string path = m_socket.string();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        return std::unexpected("control socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) +
                               " bytes long: " + path);
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    if (m_socket.has_parent_path()) {
        std::error_code ec;
        fs::create_directories(m_socket.parent_path(), ec);
        if (ec) {
            return std::unexpected("cannot create directory " + m_socket.parent_path().string() + ": " + ec.message());
        }
    }

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return std::unexpected(path + " exists and is not a socket; not replacing it");
        }
        FdGuard probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (probe.get() < 0) {
            return std::unexpected("cannot create a socket: " + errno_text(errno));
        }
        // Non-blocking: a live server with a full backlog answers EAGAIN, not a hang.
        int rc = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
        if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
            return std::unexpected("another metalsync is listening on " + path);
        }
        if (errno != ECONNREFUSED) {
            return std::unexpected("cannot check whether " + path + " is in use: " + errno_text(errno));
        }
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            return std::unexpected("cannot remove stale socket " + path + ": " + errno_text(errno));
        }
        spdlog::info("control socket {}: removed a stale socket file nobody listened on", path);
    }

    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return std::unexpected("cannot create a socket: " + errno_text(errno));
    }
    auto fail = [&](const std::string& what, bool unlink_path) -> std::expected<void, std::string> {
        int err = errno;
        ::close(fd);
        if (unlink_path) {
            ::unlink(path.c_str());
        }
        return std::unexpected(what + ": " + errno_text(err));
    };
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno == EADDRINUSE) {
            ::close(fd);
            return std::unexpected("another metalsync is listening on " + path);
        }
        return fail("cannot bind " + path, false);
    }
    if (::chmod(path.c_str(), m_options.mode) != 0) {
        return fail("cannot set the mode of " + path, true);
    }
    if (m_options.admin_group && ::chown(path.c_str(), static_cast<uid_t>(-1), *m_options.admin_group) != 0) {
        spdlog::warn("control socket {}: cannot give it group {}: {}", path, *m_options.admin_group,
                     errno_text(errno));
    }
    if (::lstat(path.c_str(), &st) != 0) {
        return fail("cannot stat " + path, true);
    }
    if (::listen(fd, SOMAXCONN) != 0) {
        return fail("cannot listen on " + path, true);
    }
    m_stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m_reap_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m_stop_fd < 0 || m_reap_fd < 0) {
        int err = errno;
        for (int* efd : {&m_stop_fd, &m_reap_fd}) {
            if (*efd >= 0) {
                ::close(*efd);
                *efd = -1;
            }
        }
        errno = err;
        return fail("cannot create an eventfd", true);
    }
    m_socket_dev = st.st_dev;
    m_socket_ino = st.st_ino;
    m_listen_fd = fd;
    m_accept_thread = std::thread([this] { accept_loop(); });
    spdlog::info("control socket {}: listening (mode {:04o})", path, static_cast<unsigned>(m_options.mode));
    return {};
}

void ControlServer::stop()
{
    if (m_listen_fd < 0) {
        return;
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(m_stop_fd, &one, sizeof one);
    if (m_accept_thread.joinable()) {
        m_accept_thread.join();
    }
    std::map<std::uint64_t, std::thread> connections;
    {
        std::lock_guard lock(m_connections_mutex);
        connections.swap(m_connections);
    }
    for (auto& [id, thread] : connections) {
        thread.join();
    }
    {
        std::lock_guard lock(m_connections_mutex);
        m_finished.clear();
    }
    ::close(m_listen_fd);
    m_listen_fd = -1;
    ::close(m_stop_fd);
    m_stop_fd = -1;
    ::close(m_reap_fd);
    m_reap_fd = -1;
    // Only our own socket file: another server may have replaced it since.
    struct stat st {};
    if (::lstat(m_socket.c_str(), &st) == 0 && st.st_dev == m_socket_dev && st.st_ino == m_socket_ino) {
        ::unlink(m_socket.c_str());
    }
    spdlog::info("control socket {}: closed", m_socket.string());
}

void ControlServer::accept_loop()
{
    while (true) {
        std::size_t active = 0;
        {
            std::lock_guard lock(m_connections_mutex);
            active = m_connections.size();
        }
        bool room = active < static_cast<std::size_t>(m_options.max_connections);
        pollfd fds[3] = {{m_stop_fd, POLLIN, 0}, {m_reap_fd, POLLIN, 0}, {room ? m_listen_fd : -1, POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            spdlog::error("control socket {}: poll failed: {}", m_socket.string(), errno_text(errno));
            return;
        }
        if ((fds[0].revents & POLLIN) != 0) {
            return;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            std::uint64_t count = 0;
            [[maybe_unused]] auto got = ::read(m_reap_fd, &count, sizeof count);
            reap_finished();
        }
        if ((fds[2].revents & POLLIN) == 0) {
            continue;
        }
        int fd = ::accept4(m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                spdlog::warn("control socket {}: cannot accept: {}", m_socket.string(), errno_text(errno));
                pollfd stop_only{m_stop_fd, POLLIN, 0};
                ::poll(&stop_only, 1, 100);  // let resources free instead of spinning
            }
            continue;
        }
        std::lock_guard lock(m_connections_mutex);
        std::uint64_t id = m_next_connection_id++;
        try {
            m_connections.emplace(id, std::thread([this, fd, id] {
                                      serve_connection(fd);
                                      connection_finished(id);
                                  }));
        } catch (const std::system_error& e) {
            ::close(fd);
            spdlog::warn("control socket {}: cannot start a connection thread: {}", m_socket.string(), e.what());
        }
    }
}

void ControlServer::connection_finished(std::uint64_t id)
{
    std::lock_guard lock(m_connections_mutex);
    m_finished.push_back(id);
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(m_reap_fd, &one, sizeof one);
}

void ControlServer::reap_finished()
{
    std::vector<std::thread> done;
    {
        std::lock_guard lock(m_connections_mutex);
        for (auto id : m_finished) {
            auto it = m_connections.find(id);
            if (it != m_connections.end()) {
                done.push_back(std::move(it->second));
                m_connections.erase(it);
            }
        }
        m_finished.clear();
    }
    for (auto& thread : done) {
        thread.join();
    }
}

void ControlServer::serve_connection(int raw_fd)
{
    FdGuard fd(raw_fd);
    ControlRequest request;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        request.peer_uid = cred.uid;
        request.peer_gid = cred.gid;
        request.peer_pid = cred.pid;
    } else {
        // Unknown peer: never privileged.
        request.peer_uid = static_cast<uid_t>(-1);
        request.peer_gid = static_cast<gid_t>(-1);
    }
    const std::string peer = "uid " + std::to_string(request.peer_uid) + " pid " + std::to_string(request.peer_pid);

    auto outcome = read_request(fd.get(), m_stop_fd, m_options.read_timeout, m_options.max_request_bytes);
    ControlReply reply;
    reply.result = k_result_error;
    bool linger = false;
    switch (outcome.kind) {
    case ReadOutcome::Kind::io_error:
        spdlog::debug("control socket: connection from {} failed: {}", peer, errno_text(outcome.error));
        return;
    case ReadOutcome::Kind::stopped:
        reply.text = "daemon is shutting down";
        break;
    case ReadOutcome::Kind::timeout:
        reply.text = "request not complete within " + duration_text(m_options.read_timeout);
        spdlog::warn("control socket: request from {} not complete within {} ({} bytes)", peer,
                     duration_text(m_options.read_timeout), outcome.body.size());
        break;
    case ReadOutcome::Kind::oversized:
        reply.text = "request larger than " + std::to_string(m_options.max_request_bytes) + " bytes";
        spdlog::warn("control socket: request from {} larger than {} bytes", peer, m_options.max_request_bytes);
        linger = true;
        break;
    case ReadOutcome::Kind::not_object:
        reply.text = "malformed request: expected a JSON object";
        spdlog::warn("control socket: malformed request from {}: not a JSON object", peer);
        linger = true;
        break;
    case ReadOutcome::Kind::eof:
    case ReadOutcome::Kind::complete: {
        auto parsed = parse_control_request(outcome.body, m_options.max_request_bytes);
        if (!parsed) {
            reply = std::move(parsed.error().reply);
            spdlog::warn("control socket: malformed request from {}: {}", peer, parsed.error().log_reason);
            break;
        }
        request.command = std::move(parsed->command);
        request.arguments = std::move(parsed->arguments);
        reply = dispatch(request);
        spdlog::debug("control socket: '{}' from {}: result {}", printable(request.command), peer, reply.result);
        break;
    }
    }
    if (!write_all(fd.get(), m_stop_fd, control_reply_json(reply), m_options.read_timeout)) {
        spdlog::debug("control socket: could not send the reply to {}", peer);
        return;
    }
    if (linger) {
        linger_discard(fd.get(), m_stop_fd);
    } else {
        ::shutdown(fd.get(), SHUT_WR);
    }
}

bool ControlServer::peer_may_mutate(const ControlRequest& request) const
{
    if (request.peer_uid == 0 || request.peer_uid == ::geteuid()) {
        return true;
    }
    if (!m_options.admin_group) {
        return false;
    }
    if (request.peer_gid == *m_options.admin_group) {
        return true;
    }
    auto groups = supplementary_groups(request.peer_pid);
    return std::find(groups.begin(), groups.end(), *m_options.admin_group) != groups.end();
}

std::string ControlServer::who_may_mutate() const
{
    std::vector<std::string> who{"root"};
    if (::geteuid() != 0) {
        who.push_back("uid " + std::to_string(::geteuid()));
    }
    if (m_options.admin_group) {
        who.push_back("group " + group_name(*m_options.admin_group));
    }
    std::string out;
    for (std::size_t i = 0; i < who.size(); ++i) {
        if (i > 0) {
            out += (i + 1 == who.size()) ? " or " : ", ";
        }
        out += who[i];
    }
    return out;
}

ControlReply ControlServer::dispatch(const ControlRequest& request) const
{
    if (request.command == k_list_commands) {
        auto names = nlohmann::json::array();
        for (const auto& info : commands()) {
            names.push_back(info.name);
        }
        ControlReply reply;
        reply.text = std::to_string(names.size()) + " commands";
        reply.arguments = std::move(names);
        return reply;
    }
    Command command;
    {
        std::lock_guard lock(m_commands_mutex);
        auto it = m_commands.find(request.command);
        if (it == m_commands.end()) {
            spdlog::warn("control socket: unknown command '{}' from uid {} pid {}", printable(request.command),
                         request.peer_uid, request.peer_pid);
            return ControlReply{k_result_unsupported, "'" + request.command + "' command not supported.", nullptr};
        }
        command = it->second;
    }
    if (command.mutating && !peer_may_mutate(request)) {
        spdlog::warn("control socket: '{}' refused to uid {} gid {} pid {}", printable(request.command), request.peer_uid,
                     request.peer_gid, request.peer_pid);
        return ControlReply{k_result_error,
                            "'" + request.command + "' needs " + who_may_mutate() + " (you are uid " +
                                std::to_string(request.peer_uid) + ")",
                            nullptr};
    }
    try {
        return command.handler(request);
    } catch (const std::exception& e) {
        spdlog::error("control socket: '{}' failed: {}", printable(request.command), e.what());
        return ControlReply{k_result_error, e.what(), nullptr};
    } catch (...) {
        spdlog::error("control socket: '{}' failed with an unknown exception", printable(request.command));
        return ControlReply{k_result_error, "'" + request.command + "' failed", nullptr};
    }
}

} // namespace metalsync
