#pragma once

// Test fixtures for the Ironic adapter: a real Ironic started through
// scripts/ironic-testbed (one per test executable, stopped at exit), and a
// tiny HTTP responder on 127.0.0.1 for what no real server can show (an old
// API version, a Keystone identity service).

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "reconcilers/ironic/ironic_client.hpp"
#include "tests/support/test_support.hpp"

namespace metalsync::test {

inline bool on_path(const std::string& program)
{
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (!dir.empty() && ::access((std::filesystem::path(dir) / program).c_str(), X_OK) == 0) {
            return true;
        }
    }
    return false;
}

// One real Ironic in its own temporary directory, on free ports.
class IronicTestbed {
public:
    explicit IronicTestbed(const std::string& label, std::vector<std::string> options = {})
        : m_dir(std::make_unique<TempDir>(label))
    {
        if (!on_path("ironic") || !on_path("ironic-dbsync")) {
            m_error = "'ironic' is not on PATH: these tests need a real Ironic; install "
                      "ironic-common python3-ironicclient openipmi ipmitool genisoimage (see docs/ironic-testbed.md)";
            return;
        }
        std::vector<std::string> argv{(source_dir() / "scripts" / "ironic-testbed").string(), "start",
                                      m_dir->path().string()};
        argv.insert(argv.end(), options.begin(), options.end());
        auto result = run(argv, std::nullopt, std::chrono::seconds(120));
        if (result.exit_code != 0) {
            m_error = "ironic-testbed start failed (exit " + std::to_string(result.exit_code) + "): " + result.err;
            return;
        }
        m_endpoint = result.out.substr(0, result.out.find('\n'));
    }
    ~IronicTestbed()
    {
        run({(source_dir() / "scripts" / "ironic-testbed").string(), "stop", m_dir->path().string()}, std::nullopt,
            std::chrono::seconds(60));
    }
    IronicTestbed(const IronicTestbed&) = delete;
    IronicTestbed& operator=(const IronicTestbed&) = delete;

    [[nodiscard]] const std::string& endpoint() const { return m_endpoint; }
    [[nodiscard]] const std::string& error() const { return m_error; }
    [[nodiscard]] const std::filesystem::path& dir() const { return m_dir->path(); }

private:
    std::unique_ptr<TempDir> m_dir;
    std::string m_endpoint;
    std::string m_error;
};

// The executable's shared Ironic, started on first use (~5 s) and stopped
// when the process exits. Fails the calling test when it cannot run.
inline const std::string& shared_ironic_endpoint()
{
    static IronicTestbed testbed("ironic");
    REQUIRE_MESSAGE(!testbed.endpoint().empty(), testbed.error());
    return testbed.endpoint();
}

struct FakeRequest {
    std::string method;
    std::string path;  // with the query string
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;

    [[nodiscard]] std::string header(const std::string& name) const
    {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

struct FakeResponse {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

// An HTTP/1.1 responder on 127.0.0.1, one request per connection, the
// handler called on the server thread.
class FakeHttpServer {
public:
    using Handler = std::function<FakeResponse(const FakeRequest&)>;

    explicit FakeHttpServer(Handler handler) : m_handler(std::move(handler))
    {
        m_listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(m_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        REQUIRE(::bind(m_listen, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(m_listen, 16) == 0);
        socklen_t len = sizeof addr;
        ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&addr), &len);
        m_port = ntohs(addr.sin_port);
        m_thread = std::thread([this] { serve(); });
    }
    ~FakeHttpServer()
    {
        m_stop = true;
        m_thread.join();
        ::close(m_listen);
    }
    FakeHttpServer(const FakeHttpServer&) = delete;
    FakeHttpServer& operator=(const FakeHttpServer&) = delete;

    [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }

    [[nodiscard]] std::vector<FakeRequest> requests() const
    {
        std::lock_guard lock(m_mutex);
        return m_requests;
    }

private:
    void serve()
    {
        while (!m_stop) {
            pollfd fd{m_listen, POLLIN, 0};
            if (::poll(&fd, 1, 50) <= 0) {
                continue;
            }
            int conn = ::accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
            if (conn < 0) {
                continue;
            }
            handle(conn);
            ::close(conn);
        }
    }

    void handle(int conn)
    {
        std::string data;
        char buf[8192];
        size_t header_end = std::string::npos;
        size_t content_length = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) {
                break;
            }
            pollfd fd{conn, POLLIN, 0};
            if (::poll(&fd, 1, 100) <= 0) {
                continue;
            }
            ssize_t n = ::recv(conn, buf, sizeof buf, 0);
            if (n <= 0) {
                return;
            }
            data.append(buf, static_cast<size_t>(n));
            if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
                auto head = data.substr(0, header_end);
                for (auto& c : head) {
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                }
                if (auto pos = head.find("content-length:"); pos != std::string::npos) {
                    content_length = std::stoul(head.substr(pos + 15));
                }
            }
        }
        if (header_end == std::string::npos) {
            return;
        }
        FakeRequest request;
        std::istringstream head(data.substr(0, header_end));
        std::string line;
        std::getline(head, line);
        std::istringstream first(line);
        first >> request.method >> request.path;
        while (std::getline(head, line)) {
            if (!line.empty() && line.back() == '\r') {
                line.pop_back();
            }
            auto colon = line.find(':');
            if (colon == std::string::npos) {
                continue;
            }
            std::string name = line.substr(0, colon);
            for (auto& c : name) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            auto value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            request.headers[name] = value;
        }
        request.body = data.substr(header_end + 4, content_length);
        {
            std::lock_guard lock(m_mutex);
            m_requests.push_back(request);
        }
        FakeResponse response = m_handler(request);
        std::string out = "HTTP/1.1 " + std::to_string(response.status) + " X\r\n";
        for (const auto& [name, value] : response.headers) {
            out += name + ": " + value + "\r\n";
        }
        out += "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
               std::to_string(response.body.size()) + "\r\n\r\n" + response.body;
        size_t sent = 0;
        while (sent < out.size()) {
            ssize_t n = ::send(conn, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                return;
            }
            sent += static_cast<size_t>(n);
        }
    }

    Handler m_handler;
    int m_listen = -1;
    int m_port = 0;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
    mutable std::mutex m_mutex;
    std::vector<FakeRequest> m_requests;
};

// A GET / answer advertising API min..max, as Ironic writes it.
inline std::string ironic_root_body(const std::string& min, const std::string& max)
{
    const std::string v = R"({"id": "v1", "status": "CURRENT", "min_version": ")" + min + R"(", "version": ")" + max + R"("})";
    return R"({"name": "OpenStack Ironic API", "default_version": )" + v + R"(, "versions": [)" + v + "]}";
}

// Polls Ironic (not faster than every 100 ms) until `ident` reaches `state`;
// returns the last state seen.
inline std::string wait_for_provision_state(IronicClient& client, const std::string& ident, const std::string& state,
                                            std::chrono::seconds deadline = std::chrono::seconds(60))
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::string last;
    while (true) {
        auto node = client.get_node(ident);
        if (node) {
            last = node->provision_state;
            if (last == state && node->target_provision_state.empty()) {
                return last;
            }
        } else {
            last = "error: " + node.error().describe();
        }
        if (std::chrono::steady_clock::now() >= until) {
            return last;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

} // namespace metalsync::test
