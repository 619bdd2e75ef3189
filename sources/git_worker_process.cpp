#include "sources/git_worker_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

extern char** environ;

namespace metalsync::git {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_cancelled{false};

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : m_fd(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    [[nodiscard]] int get() const { return m_fd; }
    void reset()
    {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_fd = -1;
    }

private:
    int m_fd = -1;
};

class SpawnSetup {
public:
    SpawnSetup()
    {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnSetup()
    {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
    posix_spawn_file_actions_t actions{};
    posix_spawnattr_t attr{};
};

void kill_and_reap(pid_t pid)
{
    ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

std::string describe_status(int status)
{
    if (WIFEXITED(status)) {
        return "exit code " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return "signal " + std::to_string(WTERMSIG(status));
    }
    return "status " + std::to_string(status);
}

} // namespace

std::string format_seconds(std::chrono::milliseconds duration)
{
    const auto ms = duration.count();
    if (ms % 1000 == 0) {
        return std::to_string(ms / 1000) + "s";
    }
    std::array<char, 32> buf{};
    std::snprintf(buf.data(), buf.size(), "%.1fs", static_cast<double>(ms) / 1000.0);
    return buf.data();
}

void cancel_all_workers() { g_cancelled.store(true); }

std::expected<nlohmann::json, GitError> run_git_worker(const std::filesystem::path& exe, const nlohmann::json& request,
                                                       WorkerDeadlines deadlines, const std::string& remote_label)
{
    auto fail = [&](std::string what) {
        return std::unexpected(GitError{"git remote " + remote_label + ": " + std::move(what), false});
    };

    // stdin is a socket so that writing to a worker that already died gives
    // EPIPE (MSG_NOSIGNAL), never a SIGPIPE in the daemon.
    int in_pair[2];
    int out_pipe[2];
    int err_pipe[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
        return fail("cannot create a socket for the git worker");
    }
    Fd in_parent(in_pair[0]);
    Fd in_child(in_pair[1]);
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
        return fail("cannot create a pipe for the git worker");
    }
    Fd out_parent(out_pipe[0]);
    Fd out_child(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        return fail("cannot create a pipe for the git worker");
    }
    Fd err_parent(err_pipe[0]);
    Fd err_child(err_pipe[1]);

    SpawnSetup setup;
    posix_spawn_file_actions_adddup2(&setup.actions, in_child.get(), 0);
    posix_spawn_file_actions_adddup2(&setup.actions, out_child.get(), 1);
    posix_spawn_file_actions_adddup2(&setup.actions, err_child.get(), 2);
    // Own process group (killed as a whole); no signal blocked or ignored as the
    // daemon may have them.
    sigset_t empty;
    sigset_t defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setpgroup(&setup.attr, 0);
    posix_spawnattr_setsigmask(&setup.attr, &empty);
    posix_spawnattr_setsigdefault(&setup.attr, &defaults);
    posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    const std::string exe_path = exe.string();
    std::string worker_arg = "__git-worker";
    std::array<char*, 3> argv{const_cast<char*>(exe_path.c_str()), worker_arg.data(), nullptr};
    pid_t pid = -1;
    if (int rc = ::posix_spawn(&pid, exe_path.c_str(), &setup.actions, &setup.attr, argv.data(), environ); rc != 0) {
        return fail("cannot start git worker " + exe_path + ": " + std::strerror(rc));
    }
    in_child.reset();
    out_child.reset();
    err_child.reset();

    const std::string payload = request.dump();
    std::size_t sent = 0;
    while (sent < payload.size()) {
        ssize_t n = ::send(in_parent.get(), payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; // the worker died; its exit is reported below
        }
        sent += static_cast<std::size_t>(n);
    }
    in_parent.reset();

    auto deadline = Clock::now() + deadlines.connect;
    std::chrono::milliseconds phase_limit = deadlines.connect;
    bool listed = false;
    std::string out_buffer;
    std::string err_buffer;
    std::optional<nlohmann::json> answer;
    bool out_open = true;
    bool err_open = true;
    ::fcntl(out_parent.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(err_parent.get(), F_SETFL, O_NONBLOCK);

    while (out_open || err_open) {
        if (g_cancelled.load()) {
            kill_and_reap(pid);
            return fail("cancelled: the daemon is stopping");
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            kill_and_reap(pid);
            std::string what = listed ? "fetch did not finish within " : "no answer within ";
            return std::unexpected(
                GitError{"git remote " + remote_label + ": " + what + format_seconds(phase_limit), true});
        }
        std::array<pollfd, 2> fds{pollfd{out_open ? out_parent.get() : -1, POLLIN, 0},
                                  pollfd{err_open ? err_parent.get() : -1, POLLIN, 0}};
        int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left.count() + 1, 1000)));
        if (rc < 0 && errno != EINTR) {
            kill_and_reap(pid);
            return fail("poll on git worker failed");
        }
        char buf[16384];
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                (i == 0 ? out_buffer : err_buffer).append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                (i == 0 ? out_open : err_open) = false;
            }
        }
        if (err_buffer.size() > 8192) {
            err_buffer.erase(0, err_buffer.size() - 4096);
        }
        for (auto nl = out_buffer.find('\n'); nl != std::string::npos; nl = out_buffer.find('\n')) {
            const std::string line = out_buffer.substr(0, nl);
            out_buffer.erase(0, nl + 1);
            auto message = nlohmann::json::parse(line, nullptr, false);
            if (message.is_discarded() || !message.is_object()) {
                continue;
            }
            const std::string event = message.value("event", std::string());
            if (event == "listed" && !listed) {
                listed = true;
                phase_limit = deadlines.fetch;
                deadline = Clock::now() + deadlines.fetch;
            } else if (event == "done" || event == "error") {
                answer = std::move(message);
            }
        }
    }

    // Both pipes closed: the worker is exiting. Reap it, still under the deadline.
    int status = 0;
    while (true) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) {
            break;
        }
        if (Clock::now() >= deadline) {
            kill_and_reap(pid);
            break;
        }
        ::usleep(2000);
    }

    if (!answer) {
        std::string detail = err_buffer;
        while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) {
            detail.pop_back();
        }
        return fail("git worker " + exe_path + " ended without an answer (" + describe_status(status) + ")" +
                    (detail.empty() ? std::string{} : ": " + detail));
    }
    if (answer->value("event", std::string()) == "error") {
        return std::unexpected(GitError{answer->value("message", std::string("unknown error")), false});
    }
    return *answer;
}

} // namespace metalsync::git
