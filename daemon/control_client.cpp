#include "daemon/control_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace metalsync {

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string seconds_text(std::chrono::milliseconds ms)
{
    if (ms.count() % 1000 == 0) {
        return std::to_string(ms.count() / 1000) + "s";
    }
    return std::to_string(ms.count()) + "ms";
}

std::string connect_error(const std::string& path, int err, std::chrono::milliseconds timeout)
{
    std::string text = "cannot connect to " + path + ": ";
    switch (err) {
    case ENOENT:
    case ECONNREFUSED:
        return text + errno_text(err) + " (is the daemon running? start it with systemctl start metalsync)";
    case EACCES:
    case EPERM:
        return text + errno_text(err) + " (the socket is for root and the metalsync group; try sudo)";
    case EAGAIN:
    case EINPROGRESS:
    case ETIMEDOUT:
        return text + "the daemon accepted no connection within " + seconds_text(timeout) + " (is it overloaded?)";
    default:
        return text + errno_text(err);
    }
}

class Socket {
public:
    Socket() : m_fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
    ~Socket()
    {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    [[nodiscard]] int get() const { return m_fd; }

private:
    int m_fd;
};

} // namespace

std::expected<ControlReply, std::string> ControlClient::call(const std::filesystem::path& socket,
                                                              std::string_view command,
                                                              const nlohmann::json& arguments,
                                                              std::chrono::milliseconds timeout) const
{
    const std::string path = socket.string();
    const auto deadline = Clock::now() + timeout;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        return std::unexpected("cannot connect to " + path + ": socket path must be 1 to " +
                               std::to_string(sizeof addr.sun_path - 1) + " bytes long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    Socket sock;
    if (sock.get() < 0) {
        return std::unexpected("cannot create a socket: " + errno_text(errno));
    }
    // A Unix connect() waits for room in the server's backlog for at most the
    // send timeout; the same timeout bounds each send below.
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno != EINTR) {
            return std::unexpected(connect_error(path, errno, timeout));
        }
    }

    nlohmann::json request = {{"command", std::string(command)}};
    if (!arguments.is_null()) {
        request["arguments"] = arguments;
    }
    std::string out = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::size_t sent = 0;
    bool send_failed = false;
    while (sent < out.size()) {
        ssize_t n = ::send(sock.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            // The daemon may have answered already (request too large, or
            // malformed); its reply is still waiting to be read.
            send_failed = true;
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    if (!send_failed) {
        ::shutdown(sock.get(), SHUT_WR);
    }

    std::string in;
    char chunk[65536];
    bool eof = false;
    while (!eof) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            break;
        }
        pollfd pfd{sock.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 60'000)));
        if (ready < 0 && errno != EINTR) {
            return std::unexpected("reading the reply from " + path + " failed: " + errno_text(errno));
        }
        if (ready <= 0) {
            continue;
        }
        ssize_t n = ::recv(sock.get(), chunk, sizeof chunk, MSG_DONTWAIT);
        if (n > 0) {
            in.append(chunk, static_cast<std::size_t>(n));
        } else if (n == 0) {
            eof = true;
        } else if (errno != EINTR && errno != EAGAIN) {
            if (in.empty()) {
                return std::unexpected("reading the reply from " + path + " failed: " + errno_text(errno));
            }
            eof = true;
        }
    }
    if (in.find_first_not_of(" \t\r\n") == std::string::npos) {
        if (!eof) {
            return std::unexpected("no reply from the daemon on " + path + " within " + seconds_text(timeout));
        }
        return std::unexpected("the daemon on " + path + " closed the connection without a reply");
    }
    nlohmann::json parsed;
    try {
        parsed = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        if (!eof) {
            return std::unexpected("no complete reply from the daemon on " + path + " within " +
                                   seconds_text(timeout));
        }
        return std::unexpected("malformed reply from the daemon on " + path + ": " + e.what());
    }
    auto result = parsed.is_object() ? parsed.find("result") : parsed.end();
    if (!parsed.is_object() || result == parsed.end() || !result->is_number_integer()) {
        return std::unexpected("malformed reply from the daemon on " + path + ": no integer \"result\"");
    }
    ControlReply reply;
    reply.result = result->get<int>();
    if (auto text = parsed.find("text"); text != parsed.end() && text->is_string()) {
        reply.text = text->get<std::string>();
    }
    if (auto args = parsed.find("arguments"); args != parsed.end()) {
        reply.arguments = std::move(*args);
    }
    return reply;
}

} // namespace metalsync
