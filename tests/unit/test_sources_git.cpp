#include "sources/git_known_hosts.hpp"
#include "sources/git_remote_url.hpp"
#include "sources/git_source.hpp"
#include "sources/git_worker_process.hpp"
#include "tests/support/test_support.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

using namespace metalsync;
using metalsync::test::run_ok;
using metalsync::test::TempDir;
using metalsync::test::write_file;

namespace fs = std::filesystem;

namespace {

std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
        s.pop_back();
    }
    return s;
}

// A working repository (non-bare, branch main) that plays the remote.
class Remote {
public:
    explicit Remote(fs::path dir) : m_dir(std::move(dir))
    {
        fs::create_directories(m_dir);
        git({"init", "-q", "-b", "main"});
        git({"config", "user.name", "Test Author"});
        git({"config", "user.email", "author@example.org"});
        git({"config", "commit.gpgsign", "false"});
        git({"config", "tag.gpgsign", "false"});
    }

    std::string git(std::vector<std::string> args) const
    {
        args.insert(args.begin(), {"git", "-C", m_dir.string()});
        return trim(run_ok(args));
    }

    std::string commit(const std::string& path, const std::string& content, const std::string& message)
    {
        write_file(m_dir / path, content);
        git({"add", "--", path});
        git({"commit", "-q", "-m", message});
        return head();
    }

    [[nodiscard]] std::string head() const { return git({"rev-parse", "HEAD"}); }
    [[nodiscard]] const fs::path& dir() const { return m_dir; }
    [[nodiscard]] std::string file_url() const { return "file://" + m_dir.string(); }

private:
    fs::path m_dir;
};

// A server process started by a test, in its own process group, stopped at scope exit.
class Background {
public:
    Background(const std::vector<std::string>& argv, const fs::path& log)
    {
        m_pid = fork();
        REQUIRE(m_pid >= 0);
        if (m_pid == 0) {
            setpgid(0, 0);
            int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            int devnull = open("/dev/null", O_RDONLY);
            dup2(devnull, 0);
            std::vector<char*> args;
            for (const auto& a : argv) {
                args.push_back(const_cast<char*>(a.c_str()));
            }
            args.push_back(nullptr);
            execvp(args[0], args.data());
            _exit(127);
        }
        setpgid(m_pid, m_pid);
    }
    ~Background()
    {
        kill(-m_pid, SIGKILL);
        int status = 0;
        waitpid(m_pid, &status, 0);
    }
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;

private:
    pid_t m_pid = -1;
};

bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
}

// Listens and never accepts: the kernel completes the handshake, nobody answers.
class StalledListener {
public:
    StalledListener()
    {
        m_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = 0;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(listen(m_fd, 16) == 0);
        socklen_t len = sizeof addr;
        getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len);
        m_port = ntohs(addr.sin_port);
    }
    ~StalledListener() { close(m_fd); }
    StalledListener(const StalledListener&) = delete;
    StalledListener& operator=(const StalledListener&) = delete;
    [[nodiscard]] int port() const { return m_port; }

private:
    int m_fd = -1;
    int m_port = 0;
};

GitSourceConfig config_for(const std::string& url, const TempDir& tmp, const std::string& state = "state")
{
    GitSourceConfig config;
    config.url = url;
    config.state_dir = tmp / state;
    return config;
}

std::string base64(std::string_view data)
{
    static const char* k_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < data.size(); i += 3) {
        std::uint32_t v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8) |
                          static_cast<unsigned char>(data[i + 2]);
        out += k_alphabet[(v >> 18) & 63];
        out += k_alphabet[(v >> 12) & 63];
        out += k_alphabet[(v >> 6) & 63];
        out += k_alphabet[v & 63];
    }
    if (data.size() - i == 1) {
        std::uint32_t v = static_cast<unsigned char>(data[i]) << 16;
        out += k_alphabet[(v >> 18) & 63];
        out += k_alphabet[(v >> 12) & 63];
        out += "==";
    } else if (data.size() - i == 2) {
        std::uint32_t v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8);
        out += k_alphabet[(v >> 18) & 63];
        out += k_alphabet[(v >> 12) & 63];
        out += k_alphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

// An SSH wire-format public key blob: string type, then key material.
std::string key_blob(const std::string& type, char fill)
{
    std::string blob;
    auto put = [&](const std::string& s) {
        auto n = static_cast<std::uint32_t>(s.size());
        blob += static_cast<char>((n >> 24) & 0xff);
        blob += static_cast<char>((n >> 16) & 0xff);
        blob += static_cast<char>((n >> 8) & 0xff);
        blob += static_cast<char>(n & 0xff);
        blob += s;
    };
    put(type);
    put(std::string(32, fill));
    return blob;
}

} // namespace

TEST_SUITE("sources")
{
    TEST_CASE("git source: file remote is cloned, then polled without fetching, then a new commit is picked up")
    {
        TempDir tmp("git");
        Remote remote(tmp / "remote");
        const std::string c1 = remote.commit("nodes/a.yaml", "kind: Node\n", "first");

        GitSource source(config_for(remote.file_url(), tmp));
        auto first = source.poll("");
        REQUIRE_MESSAGE(first.has_value(), (first ? "" : first.error().message));
        CHECK(first->commit == c1);
        CHECK(first->fetched);
        CHECK(first->changed);
        CHECK_FALSE(first->history_rewritten);

        auto again = source.poll(c1);
        REQUIRE(again.has_value());
        CHECK(again->commit == c1);
        CHECK_FALSE(again->fetched);
        CHECK_FALSE(again->changed);
        CHECK_FALSE(again->history_rewritten);

        const std::string c2 = remote.commit("nodes/b.yaml", "kind: Node\n", "second");
        auto next = source.poll(c1);
        REQUIRE(next.has_value());
        CHECK(next->commit == c2);
        CHECK(next->fetched);
        CHECK(next->changed);
        CHECK_FALSE(next->history_rewritten);

        SUBCASE("a plain absolute path works as the URL too")
        {
            GitSource by_path(config_for(remote.dir().string(), tmp, "state-path"));
            auto polled = by_path.poll("");
            REQUIRE(polled.has_value());
            CHECK(polled->commit == c2);
        }
    }

    TEST_CASE("git source: snapshot lists yaml files under the sub-path with blob ids; read_blob returns content")
    {
        TempDir tmp("git");
        Remote remote(tmp / "remote");
        write_file(remote.dir() / "README.md", "readme\n");
        write_file(remote.dir() / "top.yaml", "top: 1\n");
        write_file(remote.dir() / "clusters/a.yaml", "a: 1\n");
        write_file(remote.dir() / "clusters/notes.txt", "not yaml\n");
        write_file(remote.dir() / "clusters/sub/b.yml", "b: 2\n");
        write_file(remote.dir() / "clusters/sub/deeper/c.yaml", "c: 3\n");
        write_file(remote.dir() / "other/d.yaml", "d: 4\n");
        fs::create_symlink("a.yaml", remote.dir() / "clusters/link.yaml");
        remote.git({"add", "-A"});
        // A submodule entry (gitlink) with a yaml-looking name: ignored.
        remote.git({"update-index", "--add", "--cacheinfo",
                    "160000,1111111111111111111111111111111111111111,clusters/module.yaml"});
        remote.git({"commit", "-q", "-m", "layout\n\nbody text"});
        const std::string tip = remote.head();

        auto config = config_for(remote.file_url(), tmp);
        config.path = "clusters/";
        GitSource source(config);
        REQUIRE(source.poll("").has_value());
        auto snap = source.snapshot(tip);
        REQUIRE_MESSAGE(snap.has_value(), (snap ? "" : snap.error().message));
        CHECK(snap->commit.id == tip);
        CHECK(snap->commit.author_name == "Test Author");
        CHECK(snap->commit.author_email == "author@example.org");
        CHECK(snap->commit.summary == "layout");
        CHECK(snap->commit.time == std::stoll(remote.git({"log", "-1", "--format=%at"})));

        REQUIRE(snap->files.size() == 4);
        CHECK(snap->files[0].path == "a.yaml");
        CHECK(snap->files[1].path == "link.yaml");
        CHECK(snap->files[2].path == "sub/b.yml");
        CHECK(snap->files[3].path == "sub/deeper/c.yaml");
        CHECK_FALSE(snap->files[0].symlink);
        CHECK(snap->files[1].symlink);
        CHECK_FALSE(snap->files[2].symlink);
        for (const auto& file : snap->files) {
            CHECK(file.id == remote.git({"rev-parse", "HEAD:clusters/" + file.path}));
        }
        auto content = source.read_blob(snap->files[2].id);
        REQUIRE(content.has_value());
        CHECK(*content == "b: 2\n");

        SUBCASE("root path lists every yaml file")
        {
            GitSource root(config_for(remote.file_url(), tmp));
            auto all = root.snapshot(tip);
            REQUIRE(all.has_value());
            std::vector<std::string> paths;
            for (const auto& f : all->files) {
                paths.push_back(f.path);
            }
            CHECK(paths == std::vector<std::string>{"clusters/a.yaml", "clusters/link.yaml", "clusters/sub/b.yml",
                                                    "clusters/sub/deeper/c.yaml", "other/d.yaml", "top.yaml"});
        }
        SUBCASE("a missing sub-path is an error naming the path and the commit")
        {
            auto missing_config = config;
            missing_config.path = "nowhere/here";
            auto missing = GitSource(missing_config).snapshot(tip);
            REQUIRE_FALSE(missing.has_value());
            CHECK(missing.error().message.find("nowhere/here") != std::string::npos);
            CHECK(missing.error().message.find(tip) != std::string::npos);
        }
        SUBCASE("a sub-path that is a file is an error")
        {
            auto file_config = config;
            file_config.path = "top.yaml";
            CHECK_FALSE(GitSource(file_config).snapshot(tip).has_value());
        }
        SUBCASE("sub-paths escaping the repository are refused")
        {
            for (const std::string bad : {"../x", "/clusters", "clusters/../other", "a//b"}) {
                auto bad_config = config;
                bad_config.path = bad;
                auto refused = GitSource(bad_config).snapshot(tip);
                REQUIRE_FALSE(refused.has_value());
                CHECK(refused.error().message.find(bad) != std::string::npos);
            }
        }
        SUBCASE("unknown commit and blob ids are errors")
        {
            CHECK_FALSE(source.snapshot(std::string(40, 'a')).has_value());
            CHECK_FALSE(source.snapshot("abc").has_value());
            CHECK_FALSE(source.read_blob(std::string(40, 'b')).has_value());
            CHECK_FALSE(source.read_blob("HEAD").has_value());
        }
    }

    TEST_CASE("git source: branch, lightweight tag, annotated tag and pinned commit")
    {
        TempDir tmp("git");
        Remote remote(tmp / "remote");
        const std::string c1 = remote.commit("a.yaml", "v: 1\n", "one");
        remote.git({"tag", "light"});
        const std::string c2 = remote.commit("a.yaml", "v: 2\n", "two");
        remote.git({"tag", "-a", "annotated", "-m", "release"});
        remote.git({"checkout", "-q", "-b", "feature"});
        const std::string c3 = remote.commit("a.yaml", "v: 3\n", "three");
        remote.git({"checkout", "-q", "main"});

        SUBCASE("default branch is main")
        {
            auto got = GitSource(config_for(remote.file_url(), tmp)).poll("");
            REQUIRE(got.has_value());
            CHECK(got->commit == c2);
        }
        SUBCASE("named branch")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.branch = "feature";
            auto got = GitSource(config).poll("");
            REQUIRE(got.has_value());
            CHECK(got->commit == c3);
        }
        SUBCASE("lightweight tag")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.tag = "light";
            auto got = GitSource(config).poll("");
            REQUIRE(got.has_value());
            CHECK(got->commit == c1);
        }
        SUBCASE("annotated tag is peeled to its commit, and a moved tag is followed")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.tag = "annotated";
            GitSource source(config);
            auto got = source.poll("");
            REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().message));
            CHECK(got->commit == c2);
            REQUIRE(source.snapshot(got->commit).has_value());

            auto same = source.poll(c2);
            REQUIRE(same.has_value());
            CHECK_FALSE(same->fetched);

            remote.git({"tag", "-f", "-a", "annotated", "-m", "moved", c3});
            auto moved = source.poll(c2);
            REQUIRE(moved.has_value());
            CHECK(moved->commit == c3);
            CHECK(moved->changed);
            CHECK_FALSE(moved->history_rewritten);
        }
        SUBCASE("pinned commit: fetched once, then no network at all")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.commit = c3; // only on branch "feature"
            auto got = GitSource(config).poll("");
            REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().message));
            CHECK(got->commit == c3);
            CHECK(got->fetched);

            config.url = "file://" + (tmp / "no-such-remote").string();
            auto offline = GitSource(config).poll(c3);
            REQUIRE_MESSAGE(offline.has_value(), (offline ? "" : offline.error().message));
            CHECK(offline->commit == c3);
            CHECK_FALSE(offline->fetched);
            CHECK_FALSE(offline->changed);
        }
        SUBCASE("pinned commit that the remote does not have")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.commit = std::string(40, 'd');
            auto got = GitSource(config).poll("");
            REQUIRE_FALSE(got.has_value());
            CHECK(got.error().message.find(std::string(40, 'd')) != std::string::npos);
            CHECK_FALSE(got.error().timed_out);
        }
        SUBCASE("a short commit id, or two of branch/tag/commit, are refused")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.commit = c1.substr(0, 12);
            CHECK_FALSE(GitSource(config).poll("").has_value());
            config.commit = c1;
            config.branch = "main";
            CHECK_FALSE(GitSource(config).poll("").has_value());
        }
        SUBCASE("missing branch and tag name themselves")
        {
            auto config = config_for(remote.file_url(), tmp);
            config.branch = "nope";
            auto branch = GitSource(config).poll("");
            REQUIRE_FALSE(branch.has_value());
            CHECK(branch.error().message.find("branch 'nope' not found") != std::string::npos);
            CHECK(branch.error().message.find(remote.file_url()) != std::string::npos);
            config.branch.clear();
            config.tag = "v9";
            auto tag = GitSource(config).poll("");
            REQUIRE_FALSE(tag.has_value());
            CHECK(tag.error().message.find("tag 'v9' not found") != std::string::npos);
        }
    }

    TEST_CASE("git source: a force-push is followed and reported as rewritten history")
    {
        TempDir tmp("git");
        Remote remote(tmp / "remote");
        remote.commit("a.yaml", "v: 1\n", "one");
        const std::string c2 = remote.commit("a.yaml", "v: 2\n", "two");
        GitSource source(config_for(remote.file_url(), tmp));
        REQUIRE(source.poll("").has_value());

        remote.git({"reset", "-q", "--hard", "HEAD~1"});
        const std::string c3 = remote.commit("a.yaml", "v: 3\n", "three, rewritten");
        auto got = source.poll(c2);
        REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().message));
        CHECK(got->commit == c3);
        CHECK(got->fetched);
        CHECK(got->changed);
        CHECK(got->history_rewritten);
        auto snap = source.snapshot(c3);
        REQUIRE(snap.has_value());
        REQUIRE(snap->files.size() == 1);
        CHECK(*source.read_blob(snap->files[0].id) == "v: 3\n");

        SUBCASE("a last commit this clone never saw counts as rewritten")
        {
            GitSource fresh(config_for(remote.file_url(), tmp, "state-fresh"));
            auto unknown = fresh.poll(std::string(40, 'e'));
            REQUIRE(unknown.has_value());
            CHECK(unknown->history_rewritten);
        }
    }

    TEST_CASE("git source: git:// remote served by git daemon")
    {
        TempDir tmp("git");
        Remote remote(tmp / "srv" / "repo");
        const std::string c1 = remote.commit("x.yaml", "x: 1\n", "one");
        const int port = metalsync::test::free_port();
        Background daemon({"git", "daemon", "--reuseaddr", "--base-path=" + (tmp / "srv").string(), "--export-all",
                           "--listen=127.0.0.1", "--port=" + std::to_string(port), (tmp / "srv").string()},
                          tmp / "daemon.log");
        REQUIRE(metalsync::test::wait_until([&] { return port_accepts(port); }));

        GitSource source(config_for("git://127.0.0.1:" + std::to_string(port) + "/repo", tmp));
        auto got = source.poll("");
        REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().message));
        CHECK(got->commit == c1);
        CHECK(got->fetched);
        auto same = source.poll(c1);
        REQUIRE(same.has_value());
        CHECK_FALSE(same->fetched);
        const std::string c2 = remote.commit("x.yaml", "x: 2\n", "two");
        auto next = source.poll(c1);
        REQUIRE(next.has_value());
        CHECK(next->commit == c2);
        CHECK(next->fetched);
    }

    TEST_CASE("git source: a stalled remote times out and the worker is killed")
    {
        TempDir tmp("git");
        StalledListener stalled;
        for (const std::string scheme : {"git", "http"}) {
            CAPTURE(scheme);
            auto config = config_for(scheme + "://127.0.0.1:" + std::to_string(stalled.port()) + "/x", tmp);
            config.connect_timeout = std::chrono::milliseconds(1000);
            auto got = GitSource(config).poll("");
            REQUIRE_FALSE(got.has_value());
            CHECK(got.error().timed_out);
            CHECK(got.error().message == "git remote " + config.url + ": no answer within 1s");
        }
        // The killed workers were reaped: this process has no child left.
        int status = 0;
        CHECK(waitpid(-1, &status, WNOHANG) == -1);
    }

    TEST_CASE("git source: an unreachable remote is a clear error")
    {
        TempDir tmp("git");
        const int port = metalsync::test::free_port(); // nobody listens
        auto config = config_for("git://127.0.0.1:" + std::to_string(port) + "/x", tmp);
        auto got = GitSource(config).poll("");
        REQUIRE_FALSE(got.has_value());
        CHECK_FALSE(got.error().timed_out);
        CHECK(got.error().message.starts_with("git remote " + config.url + ": "));
        MESSAGE(got.error().message);

        auto missing = GitSource(config_for("file://" + (tmp / "absent").string(), tmp, "state2")).poll("");
        REQUIRE_FALSE(missing.has_value());
        CHECK(missing.error().message.find((tmp / "absent").string()) != std::string::npos);

        GitSourceConfig bad_worker = config_for("file://" + (tmp / "absent").string(), tmp, "state3");
        bad_worker.worker_exe = tmp / "no-such-binary";
        auto no_worker = GitSource(bad_worker).poll("");
        REQUIRE_FALSE(no_worker.has_value());
        CHECK_FALSE(no_worker.error().timed_out);
    }

    TEST_CASE("git source: http remote with a token; the token never appears in an error")
    {
        TempDir tmp("git");
        Remote remote(tmp / "srv" / "repo");
        const std::string c1 = remote.commit("h.yaml", "h: 1\n", "one");
        const std::string token = "tok-5ecret-Value-123";
        write_file(tmp / "token", token + "\n");
        const int port = metalsync::test::free_port();
        Background server({"python3", (metalsync::test::source_dir() / "tests/support/git_http_server.py").string(),
                           "--root", (tmp / "srv").string(), "--port", std::to_string(port), "--token-file",
                           (tmp / "token").string()},
                          tmp / "server.log");
        REQUIRE(metalsync::test::wait_until([&] { return port_accepts(port); }));
        const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/repo";

        auto config = config_for(url, tmp);
        config.token_file = tmp / "token";
        GitSource source(config);
        auto got = source.poll("");
        REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().message));
        CHECK(got->commit == c1);
        auto same = source.poll(c1);
        REQUIRE(same.has_value());
        CHECK_FALSE(same->fetched);

        SUBCASE("wrong token")
        {
            const std::string wrong = "wr0ng-t0ken-Value-456";
            write_file(tmp / "wrong", wrong + "\n");
            auto bad = config_for(url, tmp, "state-wrong");
            bad.token_file = tmp / "wrong";
            auto refused = GitSource(bad).poll("");
            REQUIRE_FALSE(refused.has_value());
            MESSAGE(refused.error().message);
            CHECK(refused.error().message.find(wrong) == std::string::npos);
            CHECK(refused.error().message.find((tmp / "wrong").string()) != std::string::npos);
        }
        SUBCASE("no token")
        {
            auto refused = GitSource(config_for(url, tmp, "state-none")).poll("");
            REQUIRE_FALSE(refused.has_value());
            CHECK(refused.error().message.find("token") != std::string::npos);
        }
        SUBCASE("a password in the URL is stripped from messages")
        {
            const std::string with_password = "http://git:hunter2pw@127.0.0.1:" + std::to_string(port) + "/repo";
            auto refused = GitSource(config_for(with_password, tmp, "state-pw")).poll("");
            REQUIRE_FALSE(refused.has_value());
            MESSAGE(refused.error().message);
            CHECK(refused.error().message.find("hunter2pw") == std::string::npos);
            CHECK(refused.error().message.find("http://git@127.0.0.1") != std::string::npos);
        }
    }

    TEST_CASE("git source: remote URLs are parsed and redacted")
    {
        auto ssh = parse_remote_url("ssh://deploy@git.example.org:2222/infra/metal.git");
        REQUIRE(ssh.has_value());
        CHECK(ssh->scheme == "ssh");
        CHECK(ssh->user == "deploy");
        CHECK(ssh->host == "git.example.org");
        CHECK(ssh->port == 2222);

        auto scp = parse_remote_url("git@GitHub.com:org/repo.git");
        REQUIRE(scp.has_value());
        CHECK(scp->scheme == "ssh");
        CHECK(scp->user == "git");
        CHECK(scp->host == "github.com");
        CHECK(scp->port == 22);

        auto v6 = parse_remote_url("https://[::1]:8443/r");
        REQUIRE(v6.has_value());
        CHECK(v6->host == "::1");
        CHECK(v6->port == 8443);

        CHECK(parse_remote_url("https://example.org/r")->port == 443);
        CHECK(parse_remote_url("git://example.org/r")->port == 9418);
        CHECK(parse_remote_url("file:///srv/r")->scheme == "file");
        CHECK(parse_remote_url("/srv/r")->scheme == "local");
        CHECK_FALSE(parse_remote_url("ftp://example.org/r").has_value());
        CHECK_FALSE(parse_remote_url("relative/path").has_value());
        CHECK_FALSE(parse_remote_url("https://host:notaport/r").has_value());

        CHECK(redact_url("https://user:s3cret@example.org/r.git") == "https://user@example.org/r.git");
        CHECK(redact_url("https://user@example.org/r.git") == "https://user@example.org/r.git");
        CHECK(redact_url("https://example.org/r.git") == "https://example.org/r.git");
        CHECK(url_password("https://user:s3cret@example.org/r.git") == "s3cret");
        CHECK(url_password("git@example.org:r.git").empty());

        CHECK(git::format_seconds(std::chrono::milliseconds(1000)) == "1s");
        CHECK(git::format_seconds(std::chrono::milliseconds(1500)) == "1.5s");
        CHECK(git::format_seconds(std::chrono::milliseconds(120000)) == "120s");
    }

    TEST_CASE("git source: known_hosts entries decide which ssh host keys are accepted")
    {
        const std::string good = key_blob("ssh-ed25519", 'g');
        const std::string other = key_blob("ssh-ed25519", 'o');
        const std::string revoked = key_blob("ssh-ed25519", 'r');
        const std::string text = "# comment\n"
                                 "\n"
                                 "git.example.org,10.0.0.5 ssh-ed25519 " + base64(good) + " ops@bastion\n"
                                 "[git.example.org]:2222 ssh-ed25519 " + base64(other) + "\n"
                                 "*.wild.example ssh-ed25519 " + base64(good) + "\n"
                                 "!bad.wild.example,*.wild.example ssh-ed25519 " + base64(other) + "\n"
                                 "@revoked * ssh-ed25519 " + base64(revoked) + "\n"
                                 "@cert-authority *.example.org ssh-ed25519 " + base64(other) + "\n"
                                 "|1|c2FsdA==|aGFzaA== ssh-ed25519 " + base64(good) + "\n"
                                 "malformed-line-without-key\n"
                                 "broken ssh-ed25519 !!!notbase64\n";
        auto entries = parse_known_hosts(text);
        REQUIRE(entries.size() == 6);
        CHECK(entries[0].patterns == "git.example.org,10.0.0.5");
        CHECK(entries[0].key_type == "ssh-ed25519");
        CHECK(entries[0].key == good);
        CHECK(entries[0].line == 3);
        CHECK(entries[4].revoked);
        CHECK(entries[5].hashed);

        CHECK(known_hosts_name("Git.Example.org", 22) == "git.example.org");
        CHECK(known_hosts_name("git.example.org", 2222) == "[git.example.org]:2222");

        CHECK(check_host_key(entries, "git.example.org", 22, good, "kh").has_value());
        CHECK(check_host_key(entries, "GIT.example.org", 22, good, "kh").has_value());
        CHECK(check_host_key(entries, "10.0.0.5", 22, good, "kh").has_value());
        CHECK(check_host_key(entries, "git.example.org", 2222, other, "kh").has_value());
        CHECK(check_host_key(entries, "a.wild.example", 22, good, "kh").has_value());
        CHECK(check_host_key(entries, "a.wild.example", 22, other, "kh").has_value());

        auto mismatch = check_host_key(entries, "git.example.org", 22, other, "/etc/kh");
        REQUIRE_FALSE(mismatch.has_value());
        CHECK(mismatch.error().find("does not match") != std::string::npos);
        CHECK(mismatch.error().find("/etc/kh") != std::string::npos);

        // The port-22 entry does not vouch for another port.
        auto wrong_port = check_host_key(entries, "git.example.org", 2222, good, "kh");
        REQUIRE_FALSE(wrong_port.has_value());
        CHECK(wrong_port.error().find("does not match") != std::string::npos);

        // Negated pattern: only the first wildcard line applies.
        CHECK(check_host_key(entries, "bad.wild.example", 22, good, "kh").has_value());
        CHECK_FALSE(check_host_key(entries, "bad.wild.example", 22, other, "kh").has_value());

        auto unknown = check_host_key(entries, "elsewhere.org", 22, good, "kh");
        REQUIRE_FALSE(unknown.has_value());
        CHECK(unknown.error().find("elsewhere.org is not in kh") != std::string::npos);
        CHECK(unknown.error().find("hashed") != std::string::npos);

        auto unknown_port = check_host_key(entries, "elsewhere.org", 2200, good, "kh");
        REQUIRE_FALSE(unknown_port.has_value());
        CHECK(unknown_port.error().find("[elsewhere.org]:2200") != std::string::npos);

        auto is_revoked = check_host_key(entries, "git.example.org", 22, revoked, "kh");
        REQUIRE_FALSE(is_revoked.has_value());
        CHECK(is_revoked.error().find("@revoked") != std::string::npos);

        CHECK_FALSE(check_host_key({}, "git.example.org", 22, good, "kh").has_value());
        CHECK(base64_decode(base64("any bytes\x01\xff")) == std::string("any bytes\x01\xff"));
        CHECK_FALSE(base64_decode("ab$d").has_value());
    }
}
