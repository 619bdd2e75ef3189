#include "tests/support/test_support.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace metalsync::test {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& label)
{
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/metalsync-" + label + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) {
        throw std::runtime_error("mkdtemp failed");
    }
    m_path = buf.data();
}

TempDir::~TempDir()
{
    const char* keep = std::getenv("METALSYNC_KEEP_TMP");
    if ((keep != nullptr && std::string(keep) == "1") || any_failure()) {
        MESSAGE("kept temporary directory " << m_path.string());
        return;
    }
    std::error_code ec;
    fs::remove_all(m_path, ec);
}

static std::string drain(int fd)
{
    std::string out;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

CommandResult run(const std::vector<std::string>& argv, const std::optional<fs::path>& cwd,
                  std::chrono::milliseconds deadline, const std::vector<std::string>& extra_env)
{
    int out_pipe[2];
    int err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    pid_t pid = fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        if (cwd && chdir(cwd->c_str()) != 0) {
            _exit(127);
        }
        for (const auto& kv : extra_env) {
            putenv(const_cast<char*>(kv.c_str()));
        }
        std::vector<char*> args;
        for (const auto& a : argv) {
            args.push_back(const_cast<char*>(a.c_str()));
        }
        args.push_back(nullptr);
        execvp(args[0], args.data());
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    CommandResult result;
    std::string out;
    std::string err;
    auto until = std::chrono::steady_clock::now() + deadline;
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    bool out_open = true;
    bool err_open = true;
    while (out_open || err_open) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            kill(-pid, SIGKILL);
            result.timed_out = true;
            break;
        }
        pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
        if (!out_open) {
            fds[0].fd = -1;
        }
        if (!err_open) {
            fds[1].fd = -1;
        }
        int rc = poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 1000)));
        if (rc < 0 && errno != EINTR) {
            break;
        }
        char buf[65536];
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                if (n > 0) {
                    (i == 0 ? out : err).append(buf, static_cast<size_t>(n));
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                    (i == 0 ? out_open : err_open) = false;
                }
            }
        }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    out += drain(out_pipe[0]);
    err += drain(err_pipe[0]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.out = std::move(out);
    result.err = std::move(err);
    if (!result.timed_out && WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
    }
    return result;
}

std::string run_ok(const std::vector<std::string>& argv, const std::optional<fs::path>& cwd)
{
    auto r = run(argv, cwd);
    std::string cmd;
    for (const auto& a : argv) {
        cmd += a + " ";
    }
    INFO("command: " << cmd << "\nstdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds deadline)
{
    auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
        if (condition()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return condition();
}

void write_file(const fs::path& path, const std::string& content)
{
    if (path.has_parent_path()) {
        fs::create_directories(path.parent_path());
    }
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << content;
    if (!f) {
        throw std::runtime_error("cannot write " + path.string());
    }
}

std::string read_file(const fs::path& path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    int port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

fs::path source_dir() { return METALSYNC_SOURCE_DIR; }
fs::path metalsync_binary() { return METALSYNC_BINARY; }

} // namespace metalsync::test
