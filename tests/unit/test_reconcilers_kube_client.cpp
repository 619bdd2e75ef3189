// The Kubernetes adapter: kubeconfig parsing (from text, no server), the
// client against a scripted HTTP responder for what the fake API server
// cannot show (a rotated token, 5xx), and the client against the fake API
// server (tests/fake_kube/fake_apiserver.py), over http and over TLS with a
// client certificate.

#include <cstdlib>
#include <set>
#include <sstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/kubernetes/kube_client.hpp"
#include "reconcilers/kubernetes/kubeconfig.hpp"
#include "tests/unit/ironic_fixture.hpp"
#include "tests/unit/kube_fixture.hpp"

using namespace metalsync;
using namespace metalsync::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* k_token = "kube-T0ken-abcdef0123456789";
const std::string k_ca_pem = "-----BEGIN CERTIFICATE-----\nQ0EtY2VydGlmaWNhdGUtYm9keQ==\n-----END CERTIFICATE-----\n";
const std::string k_cert_pem = "-----BEGIN CERTIFICATE-----\nY2xpZW50LWNlcnQtYm9keQ==\n-----END CERTIFICATE-----\n";
const std::string k_key_pem =
    "-----BEGIN EC PRIVATE KEY-----\nS2V5LW1hdGVyaWFsLXRoYXQtbXVzdC1uZXZlci1sZWFr\n-----END EC PRIVATE KEY-----\n";

// A kubeconfig with one cluster, one user and one context, the user's and
// cluster's fields given as YAML lines (indented by 4 under their key).
std::string kubeconfig_text(const std::string& cluster_fields, const std::string& user_fields,
                            const std::string& context_extra = {}, const std::string& current = "ctx")
{
    return "apiVersion: v1\nkind: Config\n"
           "clusters:\n- name: mgmt\n  cluster:\n" +
           cluster_fields + "users:\n- name: admin\n  user:\n" + user_fields +
           "contexts:\n- name: ctx\n  context:\n    cluster: mgmt\n    user: admin\n" + context_extra +
           (current.empty() ? std::string() : "current-context: " + current + "\n");
}

std::string data_cluster()
{
    return "    server: https://10.0.0.1:6443/\n    certificate-authority-data: " + base64_encode(k_ca_pem) + "\n";
}

std::string data_user()
{
    return "    client-certificate-data: " + base64_encode(k_cert_pem) +
           "\n    client-key-data: " + base64_encode(k_key_pem) + "\n";
}

// No error message may carry a token, key or certificate material, encoded or not.
void check_no_secrets(const std::string& message)
{
    INFO(message);
    for (const std::string& secret :
         {std::string(k_token), k_key_pem, base64_encode(k_key_pem), k_cert_pem, base64_encode(k_cert_pem), k_ca_pem,
          base64_encode(k_ca_pem), std::string("S2V5LW1hdGVyaWFs")}) {
        CHECK(message.find(secret) == std::string::npos);
    }
}

void check_no_token(const ApiError& error, const std::string& token = k_token)
{
    INFO(error.describe());
    CHECK(error.message.find(token) == std::string::npos);
    CHECK(error.describe().find(token) == std::string::npos);
}

// Sets an environment variable for one scope, restoring the previous value.
class ScopedEnv {
  public:
    ScopedEnv(const char* name, const std::optional<std::string>& value) : m_name(name)
    {
        if (const char* old = std::getenv(name)) {
            m_old = old;
        }
        if (value) {
            ::setenv(name, value->c_str(), 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv()
    {
        if (m_old) {
            ::setenv(m_name, m_old->c_str(), 1);
        } else {
            ::unsetenv(m_name);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* m_name;
    std::optional<std::string> m_old;
};

json config_map(const std::string& ns, const std::string& name, const json& data = json::object(),
                const json& labels = json::object())
{
    json object{
        {"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", name}, {"namespace", ns}}}, {"data", data}};
    if (!labels.empty()) {
        object["metadata"]["labels"] = labels;
    }
    return object;
}

json namespace_object(const std::string& name)
{
    return json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
}

// The fake API server, started for one test; fails the test when it cannot run.
std::unique_ptr<FakeApiServer> start_fake(FakeApiServerOptions options = {})
{
    auto server = std::make_unique<FakeApiServer>(std::move(options));
    REQUIRE_MESSAGE(!server->url().empty(), server->error());
    return server;
}

std::vector<json> requests_matching(const FakeApiServer& server, const std::string& method,
                                    const std::string& path_part)
{
    std::vector<json> out;
    for (const auto& request : server.requests()) {
        if (request.value("method", "") == method && request.value("path", "").find(path_part) != std::string::npos) {
            out.push_back(request);
        }
    }
    return out;
}

// The first value of a query parameter as the fake recorded it ({"name": ["value", ...]}).
std::string query_param(const json& request, const std::string& name)
{
    const auto query = request.find("query");
    if (query == request.end() || !query->is_object() || !query->contains(name)) {
        return {};
    }
    const auto& values = (*query)[name];
    return values.is_array() && !values.empty() && values[0].is_string() ? values[0].get<std::string>() : std::string();
}

bool has_query_param(const json& request, const std::string& name)
{
    const auto query = request.find("query");
    return query != request.end() && query->is_object() && query->contains(name);
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("kube client: base64_decode reads standard base64, refuses other alphabets and data after padding")
    {
        CHECK(base64_decode("") == std::string());
        CHECK(base64_decode("Zg==") == std::string("f"));
        CHECK(base64_decode("Zm8=") == std::string("fo"));
        CHECK(base64_decode("Zm9v") == std::string("foo"));
        CHECK(base64_decode("Zm9vYmFy") == std::string("foobar"));
        CHECK(base64_decode("AP8=") == std::string("\x00\xff", 2));
        CHECK(base64_decode(base64_encode(k_key_pem)) == k_key_pem);
        CHECK_FALSE(base64_decode("Zm9v!A==").has_value());
        CHECK_FALSE(base64_decode("Z===").has_value());
        CHECK_FALSE(base64_decode("Zg==Zg==").has_value());
        CHECK_FALSE(base64_decode("Zm-v").has_value());
    }

    TEST_CASE("kube client: describe and ref_of name objects as events do")
    {
        const auto cluster = ref_of(json{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
                                         {"kind", "Cluster"},
                                         {"metadata", {{"name", "baremetal-cluster"}, {"namespace", "default"}}}});
        CHECK(cluster.api_version == "cluster.x-k8s.io/v1beta1");
        CHECK(cluster.kind == "Cluster");
        CHECK(describe(cluster) == "Cluster default/baremetal-cluster");
        CHECK(describe(ref_of(namespace_object("capi-system"))) == "Namespace capi-system");
        const auto empty = ref_of(json::array());
        CHECK(empty.kind.empty());
        CHECK(empty.name.empty());
    }

    TEST_CASE("kubeconfig: data fields become in-memory PEM, never files")
    {
        auto connection = parse_kubeconfig("/etc/metalsync/kubeconfig", kubeconfig_text(data_cluster(), data_user()));
        REQUIRE_MESSAGE(connection.has_value(), connection.error());
        CHECK(connection->file == fs::path("/etc/metalsync/kubeconfig"));
        CHECK(connection->context == "ctx");
        CHECK(connection->server == "https://10.0.0.1:6443");
        CHECK(connection->tls.ca_pem == k_ca_pem);
        CHECK(connection->tls.client_cert_pem == k_cert_pem);
        CHECK(connection->tls.client_key_pem == k_key_pem);
        CHECK(connection->tls.ca_file.empty());
        CHECK(connection->tls.client_cert.empty());
        CHECK(connection->tls.client_key.empty());
        CHECK_FALSE(connection->tls.insecure);
        CHECK(connection->bearer_token.empty());
        CHECK(connection->token_file.empty());
        CHECK(connection->default_namespace == "default");
        // Data wrapped over several lines, as some tools write it, reads the same.
        const auto encoded = base64_encode(k_ca_pem);
        auto wrapped = parse_kubeconfig(
            "kc", kubeconfig_text("    server: https://10.0.0.1:6443\n    certificate-authority-data: |\n      " +
                                      encoded.substr(0, 40) + "\n      " + encoded.substr(40) + "\n",
                                  data_user()));
        REQUIRE_MESSAGE(wrapped.has_value(), wrapped.error());
        CHECK(wrapped->tls.ca_pem == k_ca_pem);
        // The key is remembered as a secret: redact() masks it wherever it shows up.
        CHECK(redact("key: " + k_key_pem).find("S2V5LW1hdGVyaWFs") == std::string::npos);
    }

    TEST_CASE("kubeconfig: file references are relative to the kubeconfig's directory")
    {
        TempDir dir("kubeconfig-files");
        fs::create_directories(dir / "conf/pki");
        write_file(dir / "conf/pki/ca.crt", k_ca_pem);
        write_file(dir / "conf/pki/client.crt", k_cert_pem);
        write_file(dir / "conf/pki/client.key", k_key_pem);
        write_file(dir / "abs.key", k_key_pem);
        const auto kubeconfig = dir / "conf" / "kubeconfig";
        const std::string text = kubeconfig_text(
            "    server: https://mgmt.example:6443\n    certificate-authority: pki/ca.crt\n",
            "    client-certificate: pki/client.crt\n    client-key: " + (dir / "abs.key").string() + "\n");

        auto connection = parse_kubeconfig(kubeconfig, text);
        REQUIRE_MESSAGE(connection.has_value(), connection.error());
        CHECK(fs::path(connection->tls.ca_file) == dir / "conf/pki/ca.crt");
        CHECK(fs::path(connection->tls.client_cert) == dir / "conf/pki/client.crt");
        CHECK(fs::path(connection->tls.client_key) == dir / "abs.key");
        CHECK(connection->tls.ca_pem.empty());
        CHECK(connection->tls.client_key_pem.empty());

        SUBCASE("load_kubeconfig reads the same file")
        {
            write_file(kubeconfig, text);
            auto loaded = load_kubeconfig(kubeconfig);
            REQUIRE_MESSAGE(loaded.has_value(), loaded.error());
            CHECK(loaded->tls.ca_file == connection->tls.ca_file);
        }
        SUBCASE("a missing file is named with its key and resolved path")
        {
            fs::remove(dir / "conf/pki/client.crt");
            auto missing = parse_kubeconfig(kubeconfig, text);
            REQUIRE_FALSE(missing.has_value());
            CHECK(missing.error().find(kubeconfig.string()) != std::string::npos);
            CHECK(missing.error().find("client-certificate") != std::string::npos);
            CHECK(missing.error().find((dir / "conf/pki/client.crt").string()) != std::string::npos);
        }
        SUBCASE("a certificate without its key is refused")
        {
            auto half = parse_kubeconfig(kubeconfig, kubeconfig_text("    server: https://mgmt.example:6443\n",
                                                                     "    client-certificate: pki/client.crt\n"));
            REQUIRE_FALSE(half.has_value());
            CHECK(half.error().find("client-key") != std::string::npos);
        }
        SUBCASE("file and data for the same item are refused")
        {
            auto both = parse_kubeconfig(
                kubeconfig, kubeconfig_text("    server: https://mgmt.example:6443\n    certificate-authority: "
                                            "pki/ca.crt\n    certificate-authority-data: " +
                                                base64_encode(k_ca_pem) + "\n",
                                            data_user()));
            REQUIRE_FALSE(both.has_value());
            CHECK(both.error().find("certificate-authority-data") != std::string::npos);
            check_no_secrets(both.error());
        }
    }

    TEST_CASE("kubeconfig: token, tokenFile and insecure-skip-tls-verify")
    {
        TempDir dir("kubeconfig-token");
        const auto kubeconfig = dir / "kubeconfig";
        const std::string cluster = "    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\n";

        SUBCASE("an inline token")
        {
            auto connection =
                parse_kubeconfig(kubeconfig, kubeconfig_text(cluster, "    token: " + std::string(k_token) + "\n"));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->bearer_token == k_token);
            CHECK(connection->token_file.empty());
            CHECK(connection->tls.insecure);
        }
        SUBCASE("a tokenFile, relative, read now and kept for re-reading")
        {
            fs::create_directories(dir / "sa");
            write_file(dir / "sa/token", std::string(k_token) + "\n");
            auto connection = parse_kubeconfig(kubeconfig, kubeconfig_text(cluster, "    tokenFile: sa/token\n"));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->bearer_token == k_token);
            CHECK(connection->token_file == dir / "sa/token");
        }
        SUBCASE("an unreadable tokenFile")
        {
            auto connection = parse_kubeconfig(kubeconfig, kubeconfig_text(cluster, "    tokenFile: sa/missing\n"));
            REQUIRE_FALSE(connection.has_value());
            CHECK(connection.error().find("tokenFile") != std::string::npos);
            CHECK(connection.error().find((dir / "sa/missing").string()) != std::string::npos);
        }
        SUBCASE("insecure together with a CA is refused, as kubectl does")
        {
            auto connection = parse_kubeconfig(
                kubeconfig,
                kubeconfig_text(cluster + "    certificate-authority-data: " + base64_encode(k_ca_pem) + "\n",
                                "    token: " + std::string(k_token) + "\n"));
            REQUIRE_FALSE(connection.has_value());
            CHECK(connection.error().find("insecure-skip-tls-verify") != std::string::npos);
            check_no_secrets(connection.error());
        }
        SUBCASE("insecure-skip-tls-verify must be a boolean")
        {
            auto connection = parse_kubeconfig(
                kubeconfig, kubeconfig_text("    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: maybe\n",
                                            "    token: token-for-x-0123456789\n"));
            REQUIRE_FALSE(connection.has_value());
            CHECK(connection.error().find("insecure-skip-tls-verify must be true or false") != std::string::npos);
        }
    }

    TEST_CASE("kubeconfig: context choice and namespace")
    {
        const std::string text = "clusters:\n"
                                 "- name: a\n  cluster:\n    server: https://a.example:6443\n"
                                 "- name: b\n  cluster:\n    server: http://127.0.0.1:8080\n"
                                 "users:\n- name: u\n  user:\n    token: token-first-0123456789\n"
                                 "contexts:\n"
                                 "- name: first\n  context:\n    cluster: a\n    user: u\n    namespace: capi-system\n"
                                 "- name: second\n  context:\n    cluster: b\n"
                                 "current-context: first\n";
        auto current = parse_kubeconfig("kc", text);
        REQUIRE_MESSAGE(current.has_value(), current.error());
        CHECK(current->context == "first");
        CHECK(current->server == "https://a.example:6443");
        CHECK(current->default_namespace == "capi-system");
        CHECK(current->bearer_token == "token-first-0123456789");

        auto named = parse_kubeconfig("kc", text, "second");
        REQUIRE_MESSAGE(named.has_value(), named.error());
        CHECK(named->context == "second");
        CHECK(named->server == "http://127.0.0.1:8080");
        CHECK(named->default_namespace == "default");
        CHECK(named->bearer_token.empty()); // a context without a user: anonymous
    }

    TEST_CASE("kubeconfig: missing names are errors naming the file and the name")
    {
        const fs::path file = "/srv/kube/mgmt.kubeconfig";
        SUBCASE("no current-context")
        {
            auto result = parse_kubeconfig(file, kubeconfig_text(data_cluster(), data_user(), {}, ""));
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error() ==
                  "kubeconfig /srv/kube/mgmt.kubeconfig: no current-context set; name the context to use");
        }
        SUBCASE("unknown context")
        {
            auto result = parse_kubeconfig(file, kubeconfig_text(data_cluster(), data_user()), "prod");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error() == "kubeconfig /srv/kube/mgmt.kubeconfig: no context named 'prod'");
        }
        SUBCASE("current-context names a missing context")
        {
            auto result = parse_kubeconfig(file, kubeconfig_text(data_cluster(), data_user(), {}, "gone"));
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().find("'gone'") != std::string::npos);
        }
        SUBCASE("unknown cluster")
        {
            const std::string text =
                "clusters: []\nusers:\n- name: admin\n  user:\n    token: " + std::string(k_token) +
                "\ncontexts:\n- name: ctx\n  context:\n    cluster: mgmt\n    user: admin\n"
                "current-context: ctx\n";
            auto result = parse_kubeconfig(file, text);
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error() == "kubeconfig /srv/kube/mgmt.kubeconfig: context ctx: no cluster named 'mgmt'");
            check_no_secrets(result.error());
        }
        SUBCASE("unknown user")
        {
            const std::string text = "clusters:\n- name: mgmt\n  cluster:\n    server: https://x:6443\n"
                                     "contexts:\n- name: ctx\n  context:\n    cluster: mgmt\n    user: robot\n"
                                     "current-context: ctx\n";
            auto result = parse_kubeconfig(file, text);
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error() == "kubeconfig /srv/kube/mgmt.kubeconfig: context ctx: no user named 'robot'");
        }
        SUBCASE("a cluster without a server")
        {
            auto result = parse_kubeconfig(file, kubeconfig_text("    insecure-skip-tls-verify: true\n", data_user()));
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error() == "kubeconfig /srv/kube/mgmt.kubeconfig: cluster mgmt: missing key server");
        }
        SUBCASE("cluster options metalsync does not honour are refused, not ignored")
        {
            for (const std::string key : {"tls-server-name", "proxy-url"}) {
                auto result =
                    parse_kubeconfig(file, kubeconfig_text(data_cluster() + "    " + key + ": x\n", data_user()));
                REQUIRE_FALSE(result.has_value());
                CHECK(result.error() ==
                      "kubeconfig /srv/kube/mgmt.kubeconfig: cluster mgmt: " + key + " is not supported");
            }
        }
        SUBCASE("a name defined twice")
        {
            const std::string text =
                kubeconfig_text(data_cluster(), data_user()) + ""; // contexts is the last list: append a second "ctx"
            auto twice = parse_kubeconfig(
                file, text.substr(0, text.find("current-context")) +
                          "- name: ctx\n  context:\n    cluster: mgmt\n    user: admin\ncurrent-context: ctx\n");
            REQUIRE_FALSE(twice.has_value());
            CHECK(twice.error().find("'ctx' is defined twice") != std::string::npos);
        }
        SUBCASE("not YAML, not a mapping")
        {
            auto bad = parse_kubeconfig(file, "clusters: [\n");
            REQUIRE_FALSE(bad.has_value());
            CHECK(bad.error().starts_with("kubeconfig /srv/kube/mgmt.kubeconfig: not valid YAML"));
            auto list = parse_kubeconfig(file, "- a\n- b\n");
            REQUIRE_FALSE(list.has_value());
            CHECK(list.error().find("not a kubeconfig") != std::string::npos);
        }
    }

    TEST_CASE("kubeconfig: exec and auth-provider plugins are refused with what to use instead")
    {
        const fs::path file = "/home/op/.kube/config";
        const std::string exec_user = "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"
                                      "      command: aws\n      args: [eks, get-token, --cluster-name, "
                                      "prod]\n      env:\n      - name: AWS_SECRET\n        value: " +
                                      std::string(k_token) + "\n";
        auto exec = parse_kubeconfig(file, kubeconfig_text(data_cluster(), exec_user));
        REQUIRE_FALSE(exec.has_value());
        CHECK(exec.error() ==
              "kubeconfig /home/op/.kube/config: user admin uses an exec credential plugin (aws), which "
              "metalsync does not support; use a client certificate or a token (for example a "
              "ServiceAccount token)");
        check_no_secrets(exec.error());

        auto provider = parse_kubeconfig(
            file, kubeconfig_text(data_cluster(), "    auth-provider:\n      name: oidc\n      config:\n        "
                                                  "id-token: " +
                                                      std::string(k_token) + "\n"));
        REQUIRE_FALSE(provider.has_value());
        CHECK(
            provider.error().find("user admin uses an auth-provider plugin (oidc), which metalsync does not support") !=
            std::string::npos);
        check_no_secrets(provider.error());

        auto basic = parse_kubeconfig(
            file, kubeconfig_text(data_cluster(), "    username: admin\n    password: " + std::string(k_token) + "\n"));
        REQUIRE_FALSE(basic.has_value());
        CHECK(basic.error().find("does not support") != std::string::npos);
        check_no_secrets(basic.error());
    }

    TEST_CASE("kubeconfig: no error message carries a token, a key or certificate data")
    {
        const fs::path file = "kubeconfig";
        const std::string token_line = "    token: " + std::string(k_token) + "\n";
        const std::string key_line = "    client-key-data: " + base64_encode(k_key_pem) + "\n";
        const std::string cert_line = "    client-certificate-data: " + base64_encode(k_cert_pem) + "\n";
        const std::vector<std::string> broken{
            // malformed base64 next to good secrets
            kubeconfig_text(data_cluster(), cert_line + "    client-key-data: " + base64_encode(k_key_pem) + "!!\n"),
            kubeconfig_text("    server: https://x:6443\n    certificate-authority-data: " + base64_encode(k_ca_pem) +
                                "%\n",
                            token_line),
            // a secret where a string is expected
            kubeconfig_text(data_cluster(), "    token:\n      nested: " + std::string(k_token) + "\n"),
            kubeconfig_text(data_cluster(), "    client-key-data: [" + base64_encode(k_key_pem) + "]\n" + cert_line),
            // half a certificate
            kubeconfig_text(data_cluster(), key_line + token_line),
            // both file and data
            kubeconfig_text(data_cluster(), key_line + cert_line + "    client-key: /nonexistent/key\n"),
            // a bad server next to the secrets
            kubeconfig_text("    server: ftp://x\n", key_line + cert_line + token_line),
            // the wrong context
            kubeconfig_text(data_cluster(), key_line + cert_line + token_line, {}, "missing"),
            // YAML broken right after a secret
            kubeconfig_text(data_cluster(), key_line + cert_line + token_line) + "  : : [\n",
        };
        for (const auto& text : broken) {
            auto result = parse_kubeconfig(file, text);
            REQUIRE_FALSE(result.has_value());
            check_no_secrets(result.error());
        }
    }

    TEST_CASE("kubeconfig: load_kubeconfig uses $KUBECONFIG's first existing file, else ~/.kube/config")
    {
        TempDir dir("kubeconfig-env");
        const auto kubeconfig_a = dir / "a.yaml";
        const auto kubeconfig_b = dir / "b.yaml";
        write_file(kubeconfig_a,
                   kubeconfig_text("    server: https://a:6443\n", "    token: token-for-a-0123456789\n"));
        write_file(kubeconfig_b,
                   kubeconfig_text("    server: https://b:6443\n", "    token: token-for-b-0123456789\n"));
        fs::create_directories(dir / "home/.kube");
        write_file(dir / "home/.kube/config",
                   kubeconfig_text("    server: https://home:6443\n", "    token: token-for-home-0123456789\n"));

        SUBCASE("several files: the first that exists")
        {
            ScopedEnv env("KUBECONFIG",
                          (dir / "missing.yaml").string() + ":" + kubeconfig_b.string() + ":" + kubeconfig_a.string());
            auto connection = load_kubeconfig({});
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->server == "https://b:6443");
            CHECK(connection->file == kubeconfig_b);
        }
        SUBCASE("none of them exists")
        {
            ScopedEnv env("KUBECONFIG", (dir / "x.yaml").string() + ":" + (dir / "y.yaml").string());
            auto connection = load_kubeconfig({});
            REQUIRE_FALSE(connection.has_value());
            CHECK(connection.error().find("x.yaml") != std::string::npos);
        }
        SUBCASE("no $KUBECONFIG: ~/.kube/config")
        {
            ScopedEnv env("KUBECONFIG", std::nullopt);
            ScopedEnv home("HOME", (dir / "home").string());
            auto connection = load_kubeconfig({});
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->server == "https://home:6443");
        }
        SUBCASE("an explicit path wins and must exist")
        {
            ScopedEnv env("KUBECONFIG", kubeconfig_b.string());
            auto connection = load_kubeconfig(kubeconfig_a);
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->server == "https://a:6443");
            auto missing = load_kubeconfig(dir / "nope.yaml");
            REQUIRE_FALSE(missing.has_value());
            CHECK(missing.error() == "kubeconfig " + (dir / "nope.yaml").string() + ": no such file");
        }
    }

    TEST_CASE("kube client: a 401 with a tokenFile re-reads the token once and retries")
    {
        TempDir dir("kube-401");
        const std::string rotated = "rotated-T0ken-9876543210";
        FakeHttpServer server([&](const FakeRequest& request) {
            if (request.header("authorization") != "Bearer " + rotated) {
                return FakeResponse{
                    401,
                    {},
                    R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})"};
            }
            if (request.path == "/api") {
                return FakeResponse{200, {}, R"({"kind":"APIVersions","versions":["v1"]})"};
            }
            if (request.path == "/apis") {
                return FakeResponse{200, {}, R"({"kind":"APIGroupList","groups":[]})"};
            }
            if (request.path == "/api/v1") {
                return FakeResponse{
                    200,
                    {},
                    R"({"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"namespaces","namespaced":false,"kind":"Namespace"},{"name":"namespaces/status","namespaced":false,"kind":"Namespace"}]})"};
            }
            return FakeResponse{404, {}, R"({"kind":"Status","message":"not found","code":404})"};
        });
        KubeConnection connection;
        connection.server = server.url();
        connection.bearer_token = k_token;
        connection.token_file = dir / "token";

        SUBCASE("the file holds a new token: the retry succeeds")
        {
            write_file(connection.token_file, rotated + "\n");
            KubeClient client(connection);
            auto info = client.resource_for("v1", "Namespace");
            REQUIRE_MESSAGE(info.has_value(), info.error().describe());
            CHECK(info->resource == "namespaces");
            CHECK_FALSE(info->namespaced);
            CHECK(info->has_status);
            const auto requests = server.requests();
            REQUIRE(requests.size() == 4); // /api (401), /api again, /apis, /api/v1
            CHECK(requests[0].header("authorization") == "Bearer " + std::string(k_token));
            CHECK(requests[1].header("authorization") == "Bearer " + rotated);
            CHECK(requests[3].header("authorization") == "Bearer " + rotated);
            CHECK(requests[0].header("user-agent").starts_with("metalsync"));
            CHECK(requests[0].header("accept") == "application/json");
            CHECK(client.requests_sent() == 4);
        }
        SUBCASE("the file holds the same token: no retry, a 401 not worth retrying")
        {
            write_file(connection.token_file, std::string(k_token) + "\n");
            KubeClient client(connection);
            auto info = client.resource_for("v1", "Namespace");
            REQUIRE_FALSE(info.has_value());
            CHECK(info.error().http_status == 401);
            CHECK_FALSE(info.error().retryable);
            CHECK(info.error().message == "authentication failed: Unauthorized");
            CHECK(info.error().operation == "GET /api");
            CHECK(server.requests().size() == 1);
            check_no_token(info.error());
        }
        SUBCASE("without a tokenFile: one request")
        {
            connection.token_file.clear();
            KubeClient client(connection);
            auto info = client.resource_for("v1", "Namespace");
            REQUIRE_FALSE(info.has_value());
            CHECK(info.error().http_status == 401);
            CHECK(server.requests().size() == 1);
        }
    }

    TEST_CASE("kube client: debug logs name each request, never the token")
    {
        TempDir dir("kube-logs");
        const std::string rotated = "rotated-T0ken-for-logs-5555";
        write_file(dir / "token", rotated);
        FakeHttpServer server([&](const FakeRequest& request) {
            if (request.header("authorization") != "Bearer " + rotated) {
                return FakeResponse{401, {}, R"({"kind":"Status","message":"Unauthorized","code":401})"};
            }
            return FakeResponse{500, {}, R"({"kind":"Status","message":"boom","code":500})"};
        });
        KubeConnection connection;
        connection.server = server.url();
        connection.bearer_token = k_token;
        connection.token_file = dir / "token";

        std::ostringstream captured;
        auto previous = spdlog::default_logger();
        auto logger =
            std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_st>(captured));
        logger->set_level(spdlog::level::trace);
        spdlog::set_default_logger(logger);
        {
            KubeClient client(connection);
            auto result = client.resource_for("v1", "ConfigMap");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().http_status == 500);
        }
        spdlog::set_default_logger(previous);
        const auto log = captured.str();
        INFO(log);
        CHECK(log.find("GET /api -> 401") != std::string::npos);
        CHECK(log.find("token re-read from " + (dir / "token").string()) != std::string::npos);
        CHECK(log.find(k_token) == std::string::npos);
        CHECK(log.find(rotated) == std::string::npos);
        CHECK(log.find("Bearer") == std::string::npos);
    }

    TEST_CASE("kube client: server errors become ApiError with the Status message, redacted")
    {
        int status = 503;
        std::string body;
        FakeHttpServer server([&](const FakeRequest&) { return FakeResponse{status, {}, body}; });
        KubeConnection connection;
        connection.server = server.url();
        connection.bearer_token = k_token;
        KubeClient client(connection);

        SUBCASE("5xx and 429 are retryable")
        {
            for (int code : {429, 500, 503, 504}) {
                status = code;
                body = R"({"kind":"Status","message":"etcdserver: request timed out","code":)" + std::to_string(code) +
                       "}";
                auto result = client.resource_for("v1", "ConfigMap");
                REQUIRE_FALSE(result.has_value());
                CHECK(result.error().http_status == code);
                CHECK(result.error().retryable);
                CHECK(result.error().message == "etcdserver: request timed out");
            }
        }
        SUBCASE("4xx are not; a message echoing the token is masked")
        {
            status = 400;
            body = std::string(R"({"kind":"Status","message":"bad header Authorization: Bearer )") + k_token + R"("})";
            auto result = client.resource_for("v1", "ConfigMap");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().http_status == 400);
            CHECK_FALSE(result.error().retryable);
            CHECK(result.error().message.find("******") != std::string::npos);
            check_no_token(result.error());
        }
        SUBCASE("a body that is not a Status is cut short")
        {
            status = 502;
            body = "<html>" + std::string(1000, 'x') + "</html>";
            auto result = client.resource_for("v1", "ConfigMap");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().retryable);
            CHECK(result.error().message.size() < 320);
        }
    }

    TEST_CASE("kube client: a server that is not there is a retryable transport error")
    {
        KubeConnection connection;
        connection.server = "http://127.0.0.1:" + std::to_string(free_port());
        connection.bearer_token = k_token;
        KubeClient client(connection, std::chrono::seconds(5));
        client.set_qps(50);
        auto result = client.get(ObjectRef{"v1", "ConfigMap", "default", "x"});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().http_status == 0);
        CHECK(result.error().retryable);
        CHECK(result.error().message.find("unreachable") != std::string::npos);
        check_no_token(result.error());
    }

    TEST_CASE("kube client: objects without apiVersion, kind, name or namespace are refused before sending")
    {
        FakeHttpServer server([](const FakeRequest&) { return FakeResponse{500, {}, "{}"}; });
        KubeConnection connection;
        connection.server = server.url();
        KubeClient client(connection);
        auto no_name =
            client.apply(json{{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", json::object()}}, "metalsync");
        REQUIRE_FALSE(no_name.has_value());
        CHECK(no_name.error().http_status == 400); // not 0: the server is not unreachable
        CHECK_FALSE(no_name.error().retryable);
        CHECK(no_name.error().message.find("metadata.name") != std::string::npos);
        CHECK(server.requests().empty());
    }

    // ---- against the fake API server ----

    TEST_CASE("kube client: discovery finds built-in and CRD kinds, refuses unknown ones")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());

        auto ns = client.resource_for("v1", "Namespace");
        REQUIRE_MESSAGE(ns.has_value(), ns.error().describe());
        CHECK(ns->resource == "namespaces");
        CHECK_FALSE(ns->namespaced);

        auto cm = client.resource_for("v1", "ConfigMap");
        REQUIRE_MESSAGE(cm.has_value(), cm.error().describe());
        CHECK(cm->resource == "configmaps");
        CHECK(cm->namespaced);

        auto cluster = client.resource_for("cluster.x-k8s.io/v1beta1", "Cluster");
        REQUIRE_MESSAGE(cluster.has_value(), cluster.error().describe());
        CHECK(cluster->resource == "clusters");
        CHECK(cluster->namespaced);
        CHECK(cluster->has_status);
        CHECK(cluster->api_version == "cluster.x-k8s.io/v1beta1");

        auto crd = client.resource_for("apiextensions.k8s.io/v1", "CustomResourceDefinition");
        REQUIRE_MESSAGE(crd.has_value(), crd.error().describe());
        CHECK_FALSE(crd->namespaced);

        // Cached: asking again sends nothing.
        const auto sent = client.requests_sent();
        CHECK(client.resource_for("v1", "ConfigMap").has_value());
        CHECK(client.resource_for("cluster.x-k8s.io/v1beta1", "Cluster").has_value());
        CHECK(client.requests_sent() == sent);

        auto unknown = client.resource_for("cluster.x-k8s.io/v1beta1", "Clustr");
        REQUIRE_FALSE(unknown.has_value());
        CHECK(unknown.error().http_status == 404);
        CHECK_FALSE(unknown.error().retryable);
        CHECK(unknown.error().message ==
              "the server does not serve kind Clustr in apiVersion cluster.x-k8s.io/v1beta1");
        auto unknown_group = client.resource_for("nothing.example.com/v1", "Thing");
        REQUIRE_FALSE(unknown_group.has_value());
        CHECK(unknown_group.error().message ==
              "the server does not serve kind Thing in apiVersion nothing.example.com/v1");

        // Discovery: /api, /apis, then only the group versions asked about, in JSON.
        const auto discovery = requests_matching(*server, "GET", "/api");
        std::set<std::string> paths;
        for (const auto& request : discovery) {
            paths.insert(request.value("path", ""));
            CHECK(request.value("accept", "") == "application/json");
        }
        CHECK(paths.contains("/api"));
        CHECK(paths.contains("/apis"));
        CHECK(paths.contains("/api/v1"));
        CHECK(paths.contains("/apis/cluster.x-k8s.io/v1beta1"));
        CHECK_FALSE(paths.contains("/apis/apps/v1"));
    }

    TEST_CASE("kube client: a CRD created through the API becomes resolvable")
    {
        auto* server = &shared_fake_apiserver();
        KubeClient client(server->connection());

        auto before = client.resource_for("example.metalsync.dev/v1", "Widget");
        REQUIRE_FALSE(before.has_value());
        CHECK(before.error().http_status == 404);

        const json crd = json::parse(R"({
          "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
          "metadata": {"name": "widgets.example.metalsync.dev"},
          "spec": {"group": "example.metalsync.dev", "scope": "Namespaced",
                   "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                   "versions": [{"name": "v1", "served": true, "storage": true,
                                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                                 "subresources": {"status": {}}}]}})");
        auto applied = client.apply(crd, "metalsync");
        REQUIRE_MESSAGE(applied.has_value(), applied.error().describe());

        // Established after the delay: each miss refreshes discovery by itself.
        ApiResult<ResourceInfo> widget = std::unexpected(ApiError{});
        CHECK(wait_until(
            [&] {
                widget = client.resource_for("example.metalsync.dev/v1", "Widget");
                return widget.has_value();
            },
            std::chrono::seconds(20)));
        REQUIRE(widget.has_value());
        CHECK(widget->resource == "widgets");
        CHECK(widget->namespaced);
        CHECK(widget->has_status);

        // invalidate_discovery forgets the cache: the next answer is asked for again.
        auto sent = client.requests_sent();
        CHECK(client.resource_for("example.metalsync.dev/v1", "Widget").has_value());
        CHECK(client.requests_sent() == sent);
        client.invalidate_discovery();
        CHECK(client.resource_for("example.metalsync.dev/v1", "Widget").has_value());
        CHECK(client.requests_sent() > sent);

        // A second client, whose cache never saw the kind, finds it on its first miss.
        KubeClient fresh(server->connection());
        auto found = fresh.resource_for("example.metalsync.dev/v1", "Widget");
        REQUIRE_MESSAGE(found.has_value(), found.error().describe());

        auto object = client.apply(json{{"apiVersion", "example.metalsync.dev/v1"},
                                        {"kind", "Widget"},
                                        {"metadata", {{"name", "w1"}, {"namespace", "default"}}},
                                        {"spec", {{"size", 3}}}},
                                   "metalsync");
        REQUIRE_MESSAGE(object.has_value(), object.error().describe());
        CHECK((*object)["spec"]["size"] == 3);

        // The CRD deleted: a list answers 404 once, then discovery no longer offers the kind.
        auto removed = client.remove(
            ObjectRef{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.metalsync.dev"});
        REQUIRE_MESSAGE(removed.has_value(), removed.error().describe());
        CHECK(wait_until([&] {
            auto listed = client.list("example.metalsync.dev/v1", "Widget");
            return !listed.has_value() && listed.error().http_status == 404;
        }));
        auto gone = client.resource_for("example.metalsync.dev/v1", "Widget");
        REQUIRE_FALSE(gone.has_value());
        CHECK(gone.error().message == "the server does not serve kind Widget in apiVersion example.metalsync.dev/v1");
    }

    TEST_CASE("kube client: apply creates then updates, as server-side apply with fieldManager and force")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());

        auto ns = client.apply(namespace_object("capi-system"), "metalsync");
        REQUIRE_MESSAGE(ns.has_value(), ns.error().describe());
        CHECK((*ns)["metadata"]["name"] == "capi-system");

        auto created = client.apply(config_map("capi-system", "settings", {{"a", "1"}}), "metalsync");
        REQUIRE_MESSAGE(created.has_value(), created.error().describe());
        CHECK((*created)["data"]["a"] == "1");
        auto updated = client.apply(config_map("capi-system", "settings", {{"a", "2"}, {"b", "3"}}), "metalsync");
        REQUIRE_MESSAGE(updated.has_value(), updated.error().describe());
        CHECK((*updated)["data"]["a"] == "2");
        CHECK((*updated)["data"]["b"] == "3");

        const auto patches = requests_matching(*server, "PATCH", "/api/v1/namespaces/capi-system/configmaps/settings");
        REQUIRE(patches.size() == 2);
        for (const auto& patch : patches) {
            INFO(patch.dump());
            CHECK(patch.value("content_type", "") == "application/apply-patch+yaml");
            CHECK(query_param(patch, "fieldManager") == "metalsync");
            CHECK(query_param(patch, "force") == "true");
            CHECK(patch.value("user_agent", "").starts_with("metalsync"));
        }
        CHECK(patches[1]["body"] == config_map("capi-system", "settings", {{"a", "2"}, {"b", "3"}}));
        const auto ns_patches = requests_matching(*server, "PATCH", "/api/v1/namespaces/capi-system");
        CHECK(ns_patches.size() == 3); // the Namespace itself, then the ConfigMap twice

        // An object of a CRD kind.
        auto cluster = client.apply(json{{"apiVersion", "cluster.x-k8s.io/v1beta1"},
                                         {"kind", "Cluster"},
                                         {"metadata", {{"name", "baremetal-cluster"}, {"namespace", "capi-system"}}},
                                         {"spec", {{"paused", true}}}},
                                    "metalsync");
        REQUIRE_MESSAGE(cluster.has_value(), cluster.error().describe());
        CHECK(requests_matching(*server, "PATCH",
                                "/apis/cluster.x-k8s.io/v1beta1/namespaces/capi-system/clusters/baremetal-cluster")
                  .size() == 1);

        SUBCASE("a namespaced kind without a namespace is refused")
        {
            auto result = client.apply(json{{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "x"}}}},
                                       "metalsync");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().message.find("metadata.namespace") != std::string::npos);
        }
        SUBCASE("an error names the operation by resource, namespace and name")
        {
            auto result = client.apply(config_map("no-such-namespace", "x"), "metalsync");
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().operation == "PATCH configmaps no-such-namespace/x");
            CHECK(result.error().http_status == 404);
        }
    }

    TEST_CASE("kube client: get answers the object or nullopt")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());
        REQUIRE(client.apply(config_map("default", "present", {{"k", "v"}}), "metalsync").has_value());

        auto present = client.get(ObjectRef{"v1", "ConfigMap", "default", "present"});
        REQUIRE_MESSAGE(present.has_value(), present.error().describe());
        REQUIRE(present->has_value());
        CHECK((**present)["data"]["k"] == "v");
        CHECK(ref_of(**present) == ObjectRef{"v1", "ConfigMap", "default", "present"});

        auto absent = client.get(ObjectRef{"v1", "ConfigMap", "default", "absent"});
        REQUIRE_MESSAGE(absent.has_value(), absent.error().describe());
        CHECK_FALSE(absent->has_value());

        auto ns = client.get(ObjectRef{"v1", "Namespace", "", "default"});
        REQUIRE_MESSAGE(ns.has_value(), ns.error().describe());
        CHECK(ns->has_value());

        auto unknown_kind = client.get(ObjectRef{"v1", "ConfigMapp", "default", "present"});
        REQUIRE_FALSE(unknown_kind.has_value());
        CHECK(unknown_kind.error().http_status == 404);
    }

    TEST_CASE("kube client: list follows continue and filters by label across namespaces")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());
        client.set_page_size(2);
        for (const char* ns : {"team-a", "team-b"}) {
            REQUIRE(client.apply(namespace_object(ns), "metalsync").has_value());
        }
        for (int i = 0; i < 5; ++i) {
            for (const char* ns : {"team-a", "team-b"}) {
                const json labels = {{"app.kubernetes.io/managed-by", "metalsync"},
                                     {"tier", i % 2 == 0 ? "even" : "odd"}};
                auto applied = client.apply(
                    config_map(ns, "cm-" + std::to_string(i), {{"i", std::to_string(i)}}, labels), "metalsync");
                REQUIRE_MESSAGE(applied.has_value(), applied.error().describe());
            }
        }

        auto all = client.list("v1", "ConfigMap", {}, "app.kubernetes.io/managed-by=metalsync");
        REQUIRE_MESSAGE(all.has_value(), all.error().describe());
        CHECK(all->size() == 10);
        std::set<ObjectRef> refs;
        for (const auto& item : *all) {
            refs.insert(ref_of(item));
        }
        CHECK(refs.size() == 10);
        CHECK(refs.contains(ObjectRef{"v1", "ConfigMap", "team-b", "cm-4"}));

        auto even_in_a = client.list("v1", "ConfigMap", "team-a", "app.kubernetes.io/managed-by=metalsync,tier=even");
        REQUIRE_MESSAGE(even_in_a.has_value(), even_in_a.error().describe());
        CHECK(even_in_a->size() == 3);
        for (const auto& item : *even_in_a) {
            CHECK(item["metadata"]["namespace"] == "team-a");
            CHECK(item["metadata"]["labels"]["tier"] == "even");
        }

        auto none = client.list("v1", "ConfigMap", {}, "tier in (none)");
        REQUIRE_MESSAGE(none.has_value(), none.error().describe());
        CHECK(none->empty());

        const auto lists = requests_matching(*server, "GET", "/api/v1/configmaps");
        CHECK(lists.size() >= 5); // 10 items, 2 a page
        bool saw_continue = false;
        for (const auto& request : lists) {
            INFO(request.dump());
            if (query_param(request, "labelSelector") == "tier in (none)") {
                continue;
            }
            CHECK(query_param(request, "limit") == "2");
            CHECK(query_param(request, "labelSelector").starts_with("app.kubernetes.io/managed-by=metalsync"));
            saw_continue = saw_continue || !query_param(request, "continue").empty();
        }
        CHECK(saw_continue);
    }

    TEST_CASE("kube client: remove with and without finalizers")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());
        REQUIRE(client.apply(config_map("default", "plain"), "metalsync").has_value());
        auto held = config_map("default", "held");
        held["metadata"]["finalizers"] = json::array({"metalsync.dev/test"});
        REQUIRE(client.apply(held, "metalsync").has_value());

        const ObjectRef plain{"v1", "ConfigMap", "default", "plain"};
        auto removed = client.remove(plain);
        REQUIRE_MESSAGE(removed.has_value(), removed.error().describe());
        CHECK(*removed);
        auto gone = client.get(plain);
        REQUIRE(gone.has_value());
        CHECK_FALSE(gone->has_value());
        auto again = client.remove(plain);
        REQUIRE_MESSAGE(again.has_value(), again.error().describe());
        CHECK_FALSE(*again);

        const ObjectRef held_ref{"v1", "ConfigMap", "default", "held"};
        auto accepted = client.remove(held_ref);
        REQUIRE_MESSAGE(accepted.has_value(), accepted.error().describe());
        CHECK(*accepted);
        auto lingering = client.get(held_ref);
        REQUIRE(lingering.has_value());
        REQUIRE(lingering->has_value());
        CHECK((**lingering)["metadata"].contains("deletionTimestamp"));
        // Still there: a second delete is accepted, not "already gone".
        auto second = client.remove(held_ref);
        REQUIRE(second.has_value());
        CHECK(*second);

        // Dropping the finalizer we own lets the deletion finish.
        auto released = client.apply(config_map("default", "held"), "metalsync");
        REQUIRE_MESSAGE(released.has_value(), released.error().describe());
        CHECK(wait_until([&] {
            auto now = client.get(held_ref);
            return now.has_value() && !now->has_value();
        }));

        const auto deletes = requests_matching(*server, "DELETE", "/api/v1/namespaces/default/configmaps/");
        REQUIRE(deletes.size() == 4);
        for (const auto& request : deletes) {
            CHECK(request["body"] ==
                  json{{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}});
        }
    }

    TEST_CASE("kube client: an apply conflict without force is a 409")
    {
        auto* server = &shared_fake_apiserver();
        server->reset_requests();
        KubeClient client(server->connection());
        REQUIRE(client.apply(config_map("default", "shared", {{"owner", "someone-else"}}), "other-tool").has_value());

        auto conflict = client.apply(config_map("default", "shared", {{"owner", "metalsync"}}), "metalsync", false);
        REQUIRE_FALSE(conflict.has_value());
        CHECK(conflict.error().http_status == 409);
        CHECK_FALSE(conflict.error().retryable);
        CHECK(conflict.error().operation == "PATCH configmaps default/shared");
        CHECK_FALSE(conflict.error().message.empty());
        const auto last = requests_matching(*server, "PATCH", "/configmaps/shared").back();
        CHECK(query_param(last, "fieldManager") == "metalsync");
        CHECK_FALSE(has_query_param(last, "force"));

        auto forced = client.apply(config_map("default", "shared", {{"owner", "metalsync"}}), "metalsync", true);
        REQUIRE_MESSAGE(forced.has_value(), forced.error().describe());
        CHECK((*forced)["data"]["owner"] == "metalsync");
    }

    TEST_CASE("kube client: a wrong token is a 401, and the token never appears in an error")
    {
        FakeApiServerOptions options;
        options.token = k_token;
        auto server = start_fake(options);

        auto right = server->connection();
        KubeClient good(right);
        auto ok = good.resource_for("v1", "ConfigMap");
        REQUIRE_MESSAGE(ok.has_value(), ok.error().describe());

        auto wrong = server->connection();
        wrong.bearer_token = "wrong-T0ken-0000";
        KubeClient bad(wrong);
        auto denied = bad.get(ObjectRef{"v1", "ConfigMap", "default", "x"});
        REQUIRE_FALSE(denied.has_value());
        CHECK(denied.error().http_status == 401);
        CHECK_FALSE(denied.error().retryable);
        check_no_token(denied.error(), "wrong-T0ken-0000");
        check_no_token(denied.error());

        // Every kind of failure with the right token: none names it.
        std::vector<ApiError> errors;
        auto unknown = good.resource_for("v1", "Nothing");
        errors.push_back(unknown.error());
        auto no_ns = good.apply(config_map("missing-namespace", "x"), "metalsync");
        REQUIRE_FALSE(no_ns.has_value());
        errors.push_back(no_ns.error());
        REQUIRE(good.apply(config_map("default", "c"), "other").has_value());
        auto conflict = good.apply(config_map("default", "c", {{"x", "y"}}), "metalsync", false);
        if (!conflict) {
            errors.push_back(conflict.error());
        }
        auto bad_object = good.apply(json{{"apiVersion", "v1"},
                                          {"kind", "ConfigMap"},
                                          {"metadata", {{"name", "Not_Valid!"}, {"namespace", "default"}}},
                                          {"data", {{"token", k_token}}}},
                                     "metalsync");
        if (!bad_object) {
            errors.push_back(bad_object.error());
        }
        for (const auto& error : errors) {
            check_no_token(error);
        }
    }

    TEST_CASE("kube client: TLS with a CA and a client certificate, from kubeconfig data or files")
    {
        auto& tls = shared_tls_fake_apiserver();
        const auto* server = &tls.server;
        const auto& pki = tls.pki;
        const auto& pki_dir = tls.pki_dir;
        const std::string cluster_data = "    server: " + server->url() +
                                         "\n    certificate-authority-data: " + base64_encode(read_file(pki.ca_cert)) +
                                         "\n";
        const std::string user_data = "    client-certificate-data: " + base64_encode(read_file(pki.client_cert)) +
                                      "\n    client-key-data: " + base64_encode(read_file(pki.client_key)) + "\n";

        SUBCASE("in-memory PEM from *-data")
        {
            auto connection = parse_kubeconfig(pki_dir / "kubeconfig", kubeconfig_text(cluster_data, user_data));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            CHECK(connection->tls.ca_file.empty());
            KubeClient client(*connection);
            auto applied = client.apply(config_map("default", "over-tls"), "metalsync");
            REQUIRE_MESSAGE(applied.has_value(), applied.error().describe());
            auto listed = client.list("v1", "ConfigMap", "default");
            REQUIRE_MESSAGE(listed.has_value(), listed.error().describe());
            CHECK_FALSE(listed->empty());
        }
        SUBCASE("files, relative to the kubeconfig")
        {
            auto connection = parse_kubeconfig(
                pki_dir / "kubeconfig",
                kubeconfig_text("    server: " + server->url() + "\n    certificate-authority: ca.crt\n",
                                "    client-certificate: client.crt\n    client-key: client.key\n"));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            KubeClient client(*connection);
            auto ns = client.resource_for("v1", "Namespace");
            REQUIRE_MESSAGE(ns.has_value(), ns.error().describe());
        }
        SUBCASE("without the client certificate the handshake or the request fails")
        {
            auto connection = parse_kubeconfig(pki_dir / "kubeconfig", kubeconfig_text(cluster_data, ""));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            KubeClient client(*connection);
            auto refused = client.resource_for("v1", "Namespace");
            REQUIRE_FALSE(refused.has_value());
            CHECK((refused.error().http_status == 0 || refused.error().http_status == 401));
        }
        SUBCASE("another CA: the server certificate is not trusted")
        {
            TempDir other_dir("kube-pki-other");
            TestPki other(other_dir.path());
            auto connection =
                parse_kubeconfig(pki_dir / "kubeconfig",
                                 kubeconfig_text("    server: " + server->url() + "\n    certificate-authority-data: " +
                                                     base64_encode(read_file(other.ca_cert)) + "\n",
                                                 user_data));
            REQUIRE_MESSAGE(connection.has_value(), connection.error());
            KubeClient client(*connection);
            auto untrusted = client.resource_for("v1", "Namespace");
            REQUIRE_FALSE(untrusted.has_value());
            CHECK(untrusted.error().http_status == 0);
            CHECK(untrusted.error().retryable);
            check_no_secrets(untrusted.error().describe());
        }
    }
}
