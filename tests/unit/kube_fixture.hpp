#pragma once

// Test fixtures for the Kubernetes adapter: the fake API server
// (tests/fake_kube/fake_apiserver.py) started as a process in its own
// temporary directory and stopped at scope exit, and a small PKI (CA, server
// and client certificates) made with the openssl command line.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "reconcilers/http/http_client.hpp"
#include "reconcilers/kubernetes/kubeconfig.hpp"
#include "tests/support/test_support.hpp"

namespace metalsync::test {

// A CA, a server certificate for 127.0.0.1 and localhost, and a client
// certificate, all signed by the CA, in `dir`.
struct TestPki {
    std::filesystem::path ca_cert, ca_key, server_cert, server_key, client_cert, client_key;

    explicit TestPki(const std::filesystem::path& dir)
        : ca_cert(dir / "ca.crt"), ca_key(dir / "ca.key"), server_cert(dir / "server.crt"),
          server_key(dir / "server.key"), client_cert(dir / "client.crt"), client_key(dir / "client.key")
    {
        const auto d = dir.string();
        run_ok({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", ca_key.string(), "-out", ca_cert.string(), "-days", "2", "-subj", "/CN=metalsync-test-ca"});
        issue("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
              dir);
        issue("client", "/CN=metalsync/O=system:masters", "extendedKeyUsage=clientAuth\n", dir);
    }

  private:
    void issue(const std::string& name, const std::string& subject, const std::string& extensions,
               const std::filesystem::path& dir) const
    {
        const auto key = (dir / (name + ".key")).string();
        const auto csr = (dir / (name + ".csr")).string();
        const auto ext = (dir / (name + ".ext")).string();
        write_file(ext, "basicConstraints=CA:FALSE\n" + extensions);
        run_ok({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                "-out", csr, "-subj", subject});
        run_ok({"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert.string(), "-CAkey", ca_key.string(),
                "-CAcreateserial", "-out", (dir / (name + ".crt")).string(), "-days", "2", "-extfile", ext});
    }
};

struct FakeApiServerOptions {
    bool crds = true;                        // --crds tests/fake_kube/crds
    std::string token;                       // --token: every request must carry it
    std::optional<TestPki> pki;              // serve https with the server certificate...
    bool require_client_certificate = false; // ... and ask for a client certificate (--client-ca)
    std::optional<double> crd_establish_delay;
    std::optional<double> discovery_lag;     // --discovery-lag: a CRD is served before discovery lists it
};

// tests/fake_kube/fake_apiserver.py in its own process group and temporary
// directory, on a free port; killed at scope exit.
class FakeApiServer {
  public:
    explicit FakeApiServer(FakeApiServerOptions options = {})
        : m_options(std::move(options)), m_dir(std::make_unique<TempDir>("fake-kube"))
    {
        const auto script = source_dir() / "tests" / "fake_kube" / "fake_apiserver.py";
        if (!std::filesystem::exists(script)) {
            m_error = script.string() + " does not exist (yet)";
            return;
        }
        const auto port_file = m_dir->path() / "port";
        std::vector<std::string> argv{
            "python3",     script.string(),    "--listen",      "127.0.0.1:0",
            "--port-file", port_file.string(), "--request-log", (m_dir->path() / "requests.log").string()};
        if (m_options.crds) {
            argv.insert(argv.end(), {"--crds", (source_dir() / "tests" / "fake_kube" / "crds").string()});
        }
        if (!m_options.token.empty()) {
            argv.insert(argv.end(), {"--token", m_options.token});
        }
        if (m_options.pki) {
            argv.insert(argv.end(), {"--tls-cert", m_options.pki->server_cert.string(), "--tls-key",
                                     m_options.pki->server_key.string()});
            if (m_options.require_client_certificate) {
                argv.insert(argv.end(), {"--client-ca", m_options.pki->ca_cert.string()});
            }
        }
        if (m_options.crd_establish_delay) {
            argv.insert(argv.end(), {"--crd-establish-delay", std::to_string(*m_options.crd_establish_delay)});
        }
        if (m_options.discovery_lag) {
            argv.insert(argv.end(), {"--discovery-lag", std::to_string(*m_options.discovery_lag)});
        }
        start(argv, m_dir->path() / "server.log");

        std::string port;
        const bool listening = wait_until(
            [&] {
                if (!alive()) {
                    return true;
                }
                std::error_code ec;
                if (!std::filesystem::exists(port_file, ec)) {
                    return false;
                }
                port = read_file(port_file);
                while (!port.empty() && (port.back() == '\n' || port.back() == ' ')) {
                    port.pop_back();
                }
                return !port.empty();
            },
            std::chrono::seconds(30));
        if (!listening || port.empty()) {
            m_error = "the fake API server did not start: " + read_file(m_dir->path() / "server.log");
            return;
        }
        m_url = std::string(m_options.pki ? "https" : "http") + "://127.0.0.1:" + port;
        HttpClient probe(connection().tls);
        const bool ready = wait_until(
            [&] {
                auto response = probe.request("GET", m_url + "/healthz", auth_headers(), {}, std::chrono::seconds(2));
                return response && response->status == 200;
            },
            std::chrono::seconds(30));
        if (!ready) {
            m_error = "the fake API server does not answer /healthz: " + read_file(m_dir->path() / "server.log");
            m_url.clear();
        }
    }
    ~FakeApiServer()
    {
        if (m_pid > 0) {
            ::kill(-m_pid, SIGKILL);
            int status = 0;
            ::waitpid(m_pid, &status, 0);
        }
    }
    FakeApiServer(const FakeApiServer&) = delete;
    FakeApiServer& operator=(const FakeApiServer&) = delete;

    [[nodiscard]] const std::string& url() const { return m_url; }
    [[nodiscard]] const std::string& error() const { return m_error; }
    [[nodiscard]] const std::filesystem::path& dir() const { return m_dir->path(); }

    // What a kubeconfig for this server would give: its URL, the token, the
    // CA and the client certificate (as files).
    [[nodiscard]] KubeConnection connection() const
    {
        KubeConnection connection;
        connection.server = m_url;
        connection.context = "fake";
        connection.bearer_token = m_options.token;
        if (m_options.pki) {
            connection.tls.ca_file = m_options.pki->ca_cert.string();
            if (m_options.require_client_certificate) {
                connection.tls.client_cert = m_options.pki->client_cert.string();
                connection.tls.client_key = m_options.pki->client_key.string();
            }
        }
        return connection;
    }

    // Every API request the server received so far (GET /_fake/requests):
    // objects with method, path, query, content_type, body.
    [[nodiscard]] std::vector<nlohmann::json> requests() const
    {
        HttpClient http(connection().tls);
        auto response = http.request("GET", m_url + "/_fake/requests", auth_headers(), {}, std::chrono::seconds(10));
        REQUIRE_MESSAGE(response.has_value(), response.error().message);
        REQUIRE(response->status == 200);
        auto doc = nlohmann::json::parse(response->body, nullptr, false);
        REQUIRE_MESSAGE(!doc.is_discarded(), response->body);
        if (doc.is_object() && doc.contains("requests")) {
            doc = doc["requests"];
        } else if (doc.is_object() && doc.contains("items")) {
            doc = doc["items"];
        }
        REQUIRE(doc.is_array());
        return doc.get<std::vector<nlohmann::json>>();
    }

    // Forgets the requests received so far (POST /_fake/reset-requests).
    void reset_requests() const
    {
        HttpClient http(connection().tls);
        auto response =
            http.request("POST", m_url + "/_fake/reset-requests", auth_headers(), "{}", std::chrono::seconds(10));
        REQUIRE_MESSAGE(response.has_value(), response.error().message);
        REQUIRE(response->status == 200);
    }

  private:
    [[nodiscard]] HttpHeaders auth_headers() const
    {
        HttpHeaders headers{{"Accept", "application/json"}};
        if (!m_options.token.empty()) {
            headers.emplace_back("Authorization", "Bearer " + m_options.token);
        }
        return headers;
    }

    [[nodiscard]] bool alive() const
    {
        int status = 0;
        return m_pid > 0 && ::waitpid(m_pid, &status, WNOHANG) == 0;
    }

    void start(const std::vector<std::string>& argv, const std::filesystem::path& log)
    {
        m_pid = ::fork();
        REQUIRE(m_pid >= 0);
        if (m_pid == 0) {
            ::setpgid(0, 0);
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            ::dup2(devnull, 0);
            std::vector<char*> args;
            for (const auto& a : argv) {
                args.push_back(const_cast<char*>(a.c_str()));
            }
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ::setpgid(m_pid, m_pid);
    }

    FakeApiServerOptions m_options;
    std::unique_ptr<TempDir> m_dir;
    pid_t m_pid = -1;
    std::string m_url;
    std::string m_error;
};

// The executable's shared fake API server over http with the Cluster API
// CRDs, started on first use (python and the CRDs take a few seconds) and
// stopped at exit. Tests sharing it use names of their own.
inline FakeApiServer& shared_fake_apiserver()
{
    static FakeApiServer server;
    REQUIRE_MESSAGE(!server.url().empty(), server.error());
    return server;
}

// The same over https, asking for a client certificate signed by the PKI's CA.
struct TlsFakeApiServer {
    TempDir pki_dir{"kube-pki"};
    TestPki pki{pki_dir.path()};
    FakeApiServer server{options()};

    [[nodiscard]] FakeApiServerOptions options() const
    {
        FakeApiServerOptions out;
        out.pki = pki;
        out.require_client_certificate = true;
        return out;
    }
};

inline TlsFakeApiServer& shared_tls_fake_apiserver()
{
    static TlsFakeApiServer tls;
    REQUIRE_MESSAGE(!tls.server.url().empty(), tls.server.error());
    return tls;
}

} // namespace metalsync::test
