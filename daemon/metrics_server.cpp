#include "daemon/metrics_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <list>
#include <system_error>
#include <vector>

#include <spdlog/spdlog.h>

namespace metalsync {

namespace {

using Clock = std::chrono::steady_clock;

// After an error reply to a request not read whole, read and discard what
// the client still sends for a moment, so it gets our reply instead of a reset.
constexpr std::chrono::milliseconds k_linger{250};
constexpr std::size_t k_linger_bytes = 1024 * 1024;
constexpr int k_accepts_per_wakeup = 16;

std::string errno_text(int err)
{
    return std::error_code(err, std::generic_category()).message();
}

struct Connection {
    enum class State { reading, writing, draining };
    int fd = -1;
    State state = State::reading;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    std::size_t drained = 0;
    bool drain_after_write = false;
    Clock::time_point opened;
    Clock::time_point deadline;
};

std::string response(int status, std::string_view reason, std::string_view content_type, const std::string& body,
                     bool head, std::string_view extra_headers = {})
{
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
    out += "Content-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out += extra_headers;
    out += "Connection: close\r\n\r\n";
    if (!head) {
        out += body;
    }
    return out;
}

std::string plain(int status, std::string_view reason, std::string_view extra_headers = {})
{
    std::string body(reason);
    for (auto& c : body)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return response(status, reason, "text/plain; charset=utf-8", body + "\n", false, extra_headers);
}

// End of the request head ("\r\n\r\n", or "\n\n" from lax clients), or npos.
std::size_t head_end(const std::string& in)
{
    auto crlf = in.find("\r\n\r\n");
    auto lf = in.find("\n\n");
    if (crlf == std::string::npos && lf == std::string::npos) return std::string::npos;
    if (crlf == std::string::npos) return lf + 2;
    if (lf == std::string::npos) return crlf + 4;
    return std::min(crlf + 4, lf + 2);
}

} // namespace

std::string ListenAddress::text() const
{
    bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::expected<ListenAddress, std::string> parse_listen_address(std::string_view text)
{
    auto bad = [&](const std::string& why) {
        return std::unexpected("'" + std::string(text) + "' is not a listen address (" + why +
                               "; for example 127.0.0.1:9460 or [::1]:9460)");
    };
    ListenAddress address;
    std::string_view port;
    if (text.starts_with("[")) {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return bad("an IPv6 address is written [address]:port");
        }
        address.host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return bad("no port");
        }
        address.host = std::string(text.substr(0, colon));
        if (address.host.find(':') != std::string::npos) {
            return bad("an IPv6 address needs brackets");
        }
        port = text.substr(colon + 1);
    }
    if (address.host.empty()) {
        return bad("no host; 0.0.0.0 or [::] listen on every interface");
    }
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || value > 65535) {
        return bad("the port must be a number from 0 to 65535");
    }
    address.port = static_cast<std::uint16_t>(value);
    return address;
}

MetricsServer::MetricsServer(std::string listen, Render render, MetricsServerOptions options)
    : m_listen(std::move(listen)), m_render(std::move(render)), m_options(options)
{
    m_options.max_connections = std::max<std::size_t>(1, m_options.max_connections);
}

MetricsServer::~MetricsServer()
{
    stop();
}

std::expected<int, std::string> MetricsServer::open_listener(const std::string& listen, int& error_number) const
{
    error_number = 0;
    auto address = parse_listen_address(listen);
    if (!address) {
        error_number = EINVAL;
        return std::unexpected(address.error());
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    std::string port = std::to_string(address->port);
    if (int rc = ::getaddrinfo(address->host.c_str(), port.c_str(), &hints, &found); rc != 0) {
        error_number = EINVAL;
        return std::unexpected(address->text() + ": cannot resolve '" + address->host + "': " + ::gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
    int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        error_number = errno;
        return std::unexpected(address->text() + ": cannot create a socket: " + errno_text(errno));
    }
    int one = 1;
    // Lets a restarted daemon bind while old connections sit in TIME_WAIT;
    // on Linux it does not let two listeners share the address.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (found->ai_family == AF_INET6) {
        // [::] means IPv6 only, whatever net.ipv6.bindv6only says.
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
        error_number = errno;
        ::close(fd);
        std::string why = errno_text(error_number);
        if (error_number == EADDRINUSE) {
            why =
                "address already in use (another process, or another metalsync, listens there; change metrics.listen)";
        } else if (error_number == EADDRNOTAVAIL) {
            why = "no such address on this host";
        } else if (error_number == EACCES) {
            why = "permission denied (ports below 1024 need privileges)";
        }
        return std::unexpected(address->text() + ": " + why);
    }
    return fd;
}

std::expected<void, std::string> MetricsServer::start()
{
    if (running()) {
        return {};
    }
    int error_number = 0;
    auto fd = open_listener(m_listen, error_number);
    if (!fd) {
        return std::unexpected(fd.error());
    }
    launch(*fd);
    return {};
}

void MetricsServer::launch(int listen_fd)
{
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    m_port = 0;
    if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
        if (bound.ss_family == AF_INET) {
            m_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        } else if (bound.ss_family == AF_INET6) {
            m_port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
        }
    }
    m_listen_fd = listen_fd;
    m_stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m_thread = std::thread([this] { serve_loop(); });
    if (auto address = parse_listen_address(m_listen)) {
        address->port = static_cast<std::uint16_t>(m_port);
        spdlog::info("metrics: listening on http://{}/metrics", address->text());
    }
}

void MetricsServer::stop()
{
    if (!running()) {
        return;
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(m_stop_fd, &one, sizeof one);
    if (m_thread.joinable()) {
        m_thread.join();
    }
    ::close(m_listen_fd);
    m_listen_fd = -1;
    ::close(m_stop_fd);
    m_stop_fd = -1;
    m_port = 0;
}

std::expected<void, std::string> MetricsServer::rebind(const std::string& listen)
{
    if (listen == m_listen && running()) {
        return {};
    }
    if (auto parsed = parse_listen_address(listen); !parsed) {
        return std::unexpected(parsed.error());
    }
    if (!running()) {
        m_listen = listen;
        return start();
    }
    int error_number = 0;
    auto fd = open_listener(listen, error_number);
    if (!fd && error_number == EADDRINUSE && parse_listen_address(listen)->port == m_port) {
        // Perhaps in use by ourselves (same port, 127.0.0.1 -> 0.0.0.0):
        // let go of the old socket and try again, falling back to it.
        std::string old = m_listen;
        stop();
        fd = open_listener(listen, error_number);
        if (!fd) {
            int ignored = 0;
            if (auto back = open_listener(old, ignored)) {
                launch(*back);
            } else {
                spdlog::error("metrics: cannot listen on {} again: {}", old, back.error());
            }
            return std::unexpected(fd.error());
        }
    }
    if (!fd) {
        return std::unexpected(fd.error());
    }
    stop();
    m_listen = listen;
    launch(*fd);
    return {};
}

void MetricsServer::serve_loop()
{
    std::list<Connection> connections;
    std::vector<pollfd> fds;
    std::vector<Connection*> polled;

    auto close_connection = [&](std::list<Connection>::iterator it) {
        ::close(it->fd);
        return connections.erase(it);
    };

    auto answer = [&](Connection& c, std::string out, bool drain) {
        c.state = Connection::State::writing;
        c.out = std::move(out);
        c.sent = 0;
        c.drain_after_write = drain;
        c.deadline = Clock::now() + m_options.write_timeout;
    };

    auto handle_request = [&](Connection& c, std::size_t end) {
        std::string_view head(c.in.data(), end);
        auto line_end = head.find('\n');
        std::string_view line = head.substr(0, line_end);
        if (line.ends_with('\r')) line.remove_suffix(1);
        auto sp1 = line.find(' ');
        auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
        bool extra_data = c.in.size() > end;
        if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
            answer(c, plain(400, "Bad Request"), true);
            return;
        }
        std::string_view method = line.substr(0, sp1);
        std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        std::string_view version = line.substr(sp2 + 1);
        if (!version.starts_with("HTTP/")) {
            answer(c, plain(400, "Bad Request"), true);
            return;
        }
        if (version != "HTTP/1.1" && version != "HTTP/1.0") {
            answer(c, plain(505, "HTTP Version Not Supported"), true);
            return;
        }
        std::string_view path = target.substr(0, target.find('?'));
        bool known = path == "/metrics" || path == "/healthz";
        if (!known) {
            answer(c, plain(404, "Not Found"), extra_data);
            return;
        }
        bool head_only = method == "HEAD";
        if (method != "GET" && !head_only) {
            answer(c, plain(405, "Method Not Allowed", "Allow: GET, HEAD\r\n"), true);
            return;
        }
        if (path == "/healthz") {
            answer(c, response(200, "OK", "text/plain; charset=utf-8", "ok\n", head_only), extra_data);
            return;
        }
        std::string body;
        try {
            body = m_render();
        } catch (const std::exception& e) {
            spdlog::error("metrics: cannot render: {}", e.what());
            answer(c, plain(500, "Internal Server Error"), extra_data);
            return;
        }
        answer(c, response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head_only), extra_data);
    };

    auto on_readable = [&](Connection& c) -> bool { // false: close it
        char chunk[4096];
        while (true) {
            ssize_t n = ::recv(c.fd, chunk, sizeof chunk, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                return errno == EAGAIN || errno == EWOULDBLOCK;
            }
            if (n == 0) {
                // A client that closes before a whole request gets nothing;
                // one that half-closed after writing it is served.
                if (c.state == Connection::State::reading) {
                    auto end = head_end(c.in);
                    if (end == std::string::npos) return false;
                    handle_request(c, end);
                    return true;
                }
                return c.state != Connection::State::draining;
            }
            if (c.state == Connection::State::draining) {
                c.drained += static_cast<std::size_t>(n);
                if (c.drained > k_linger_bytes) return false;
                continue;
            }
            if (c.state != Connection::State::reading) {
                continue; // more after the request: ignored (one request per connection)
            }
            c.in.append(chunk, static_cast<std::size_t>(n));
            auto end = head_end(c.in);
            if (end != std::string::npos && end <= m_options.max_request_bytes) {
                handle_request(c, end);
                return true;
            }
            if (c.in.size() > m_options.max_request_bytes) {
                spdlog::debug("metrics: request larger than {} bytes refused", m_options.max_request_bytes);
                answer(c, plain(431, "Request Header Fields Too Large"), true);
                return true;
            }
        }
    };

    auto on_writable = [&](Connection& c) -> bool {
        while (c.sent < c.out.size()) {
            ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                return errno == EAGAIN || errno == EWOULDBLOCK;
            }
            c.sent += static_cast<std::size_t>(n);
        }
        ::shutdown(c.fd, SHUT_WR);
        if (!c.drain_after_write) return false;
        c.state = Connection::State::draining;
        c.deadline = Clock::now() + k_linger;
        return true;
    };

    while (true) {
        auto now = Clock::now();
        // Expired deadlines: a request not complete in time gets 408.
        for (auto it = connections.begin(); it != connections.end();) {
            if (now < it->deadline) {
                ++it;
                continue;
            }
            if (it->state == Connection::State::reading) {
                spdlog::debug("metrics: request not complete within {} ms", m_options.read_timeout.count());
                answer(*it, plain(408, "Request Timeout"), true);
                ++it;
            } else {
                it = close_connection(it);
            }
        }
        fds.clear();
        polled.clear();
        fds.push_back({m_stop_fd, POLLIN, 0});
        fds.push_back({m_listen_fd, POLLIN, 0});
        auto next_deadline = now + std::chrono::seconds(60);
        for (auto& c : connections) {
            short events = c.state == Connection::State::writing ? POLLOUT : POLLIN;
            fds.push_back({c.fd, events, 0});
            polled.push_back(&c);
            next_deadline = std::min(next_deadline, c.deadline);
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - now).count() + 1;
        int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait, 0, 60'000)));
        if (ready < 0) {
            if (errno == EINTR) continue;
            spdlog::error("metrics: poll failed: {}", errno_text(errno));
            break;
        }
        if ((fds[0].revents & POLLIN) != 0) {
            break;
        }
        std::vector<Connection*> finished;
        for (std::size_t i = 0; i < polled.size(); ++i) {
            auto revents = fds[i + 2].revents;
            if (revents == 0) continue;
            Connection& c = *polled[i];
            bool keep = true;
            if (c.state == Connection::State::writing) {
                keep = (revents & (POLLERR | POLLHUP)) == 0 || (revents & POLLOUT) != 0 ? on_writable(c) : false;
            } else {
                keep = on_readable(c);
                if (keep && c.state == Connection::State::writing) {
                    keep = on_writable(c); // usually the whole response fits in the socket buffer
                }
            }
            if (!keep) finished.push_back(&c);
        }
        for (auto it = connections.begin(); it != connections.end();) {
            if (std::find(finished.begin(), finished.end(), &*it) != finished.end()) {
                it = close_connection(it);
            } else {
                ++it;
            }
        }
        if ((fds[1].revents & POLLIN) == 0) {
            continue;
        }
        for (int i = 0; i < k_accepts_per_wakeup; ++i) {
            int fd = ::accept4(m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    spdlog::warn("metrics: cannot accept: {}", errno_text(errno));
                    if (!connections.empty()) close_connection(connections.begin());
                }
                break;
            }
            if (connections.size() >= m_options.max_connections) {
                // Full: the oldest connection still sending its request goes
                // (a slow client), else the oldest of all.
                auto victim = std::find_if(connections.begin(), connections.end(),
                                           [](const Connection& c) { return c.state == Connection::State::reading; });
                close_connection(victim != connections.end() ? victim : connections.begin());
            }
            Connection c;
            c.fd = fd;
            c.opened = Clock::now();
            c.deadline = c.opened + m_options.read_timeout;
            connections.push_back(std::move(c));
        }
    }
    for (auto& c : connections) {
        ::close(c.fd);
    }
}

} // namespace metalsync
