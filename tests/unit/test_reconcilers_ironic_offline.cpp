// The Ironic adapter's parts that need no real Ironic: error mapping, retry,
// redaction, clouds.yaml, and what only a fake server can show (an old API
// version, a Keystone identity service that rejects a token).

#include <cstdlib>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "reconcilers/http/http_client.hpp"
#include "reconcilers/http/redact.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "reconcilers/ironic/ironic_errors.hpp"
#include "reconcilers/ironic/retry.hpp"
#include "reconcilers/openstack/clouds_config.hpp"
#include "tests/unit/ironic_fixture.hpp"

using namespace metalsync;
using namespace metalsync::test;
using nlohmann::json;

namespace {

// Ironic's error envelope: the fault document as a JSON string (docs/ironic-testbed.md, 6).
std::string ironic_fault(const std::string& faultstring)
{
    const json fault{{"faultcode", "Client"}, {"faultstring", faultstring}, {"debuginfo", nullptr}};
    return json{{"error_message", fault.dump()}}.dump();
}

IronicConnection connection_to(std::string endpoint, IronicAuth auth = NoAuth{})
{
    IronicConnection connection;
    connection.endpoint = std::move(endpoint);
    connection.auth = std::move(auth);
    return connection;
}

// Sets an environment variable for one scope.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : m_name(name)
    {
        if (const char* old = std::getenv(name)) {
            m_old = old;
        }
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv()
    {
        if (m_old) {
            ::setenv(m_name.c_str(), m_old->c_str(), 1);
        } else {
            ::unsetenv(m_name.c_str());
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    std::string m_name;
    std::optional<std::string> m_old;
};

ApiResult<int> failure(int status, bool retryable, bool locked)
{
    return std::unexpected(ApiError{status, retryable, locked, "m", "op"});
}

} // namespace

TEST_SUITE("reconcilers")
{
    TEST_CASE("ironic errors: bodies map to ApiError")
    {
        SUBCASE("409 NodeLocked is retryable quickly")
        {
            const auto body = ironic_fault("Node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123 is locked by host testbed, please "
                                           "retry after the current operation is completed.");
            const auto error = ironic_api_error("PUT /v1/nodes/n1/states/provision", 409, body);
            CHECK(error.http_status == 409);
            CHECK(error.node_locked);
            CHECK(error.retryable);
            CHECK(error.message ==
                  "Node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123 is locked by host testbed, please retry after the current "
                  "operation is completed.");
            CHECK(error.describe() == "PUT /v1/nodes/n1/states/provision: HTTP 409: " + error.message);
        }
        SUBCASE("409 that is not a lock (duplicate name) is final")
        {
            const auto error = ironic_api_error("POST /v1/nodes", 409, ironic_fault("A node with name n1 already exists."));
            CHECK_FALSE(error.node_locked);
            CHECK_FALSE(error.retryable);
            CHECK(error.message == "A node with name n1 already exists.");
        }
        SUBCASE("503, 502, 504 and 429 are retryable, not locked")
        {
            for (int status : {429, 502, 503, 504}) {
                const auto error = ironic_api_error("GET /v1/nodes", status, "<html>Service Unavailable</html>");
                CHECK(error.retryable);
                CHECK_FALSE(error.node_locked);
                CHECK(error.message == "<html>Service Unavailable</html>");
            }
        }
        SUBCASE("400 decodes the inner faultstring")
        {
            const auto error = ironic_api_error("POST /v1/nodes", 400,
                                                ironic_fault("No valid host was found. Reason: No conductor service "
                                                             "registered which supports driver nope for conductor group \"\"."));
            CHECK_FALSE(error.retryable);
            CHECK(error.message.starts_with("No valid host was found."));
            CHECK(error.message.find("faultcode") == std::string::npos);
        }
        SUBCASE("an error_message given as an object")
        {
            const auto body = json{{"error_message", {{"faultstring", "Invalid input"}, {"faultcode", "Client"}}}}.dump();
            CHECK(ironic_api_error("PATCH /v1/nodes/x", 400, body).message == "Invalid input");
        }
        SUBCASE("401 from the auth middleware names authentication")
        {
            const auto error = ironic_api_error("GET /v1/nodes", 401, R"({"error":{"message":"Authorization required","code":401}})");
            CHECK_FALSE(error.retryable);
            CHECK(error.message == "authentication failed: Authorization required");
        }
        SUBCASE("a long non-JSON body is cut")
        {
            const auto error = ironic_api_error("GET /", 500, std::string(5000, 'x'));
            CHECK(error.message.size() < 400);
        }
        SUBCASE("credentials in a message are masked")
        {
            remember_secret("remembered-bmc-secret");
            const auto error = ironic_api_error(
                "PATCH /v1/nodes/x", 400,
                ironic_fault(R"(Invalid driver_info {"ipmi_password": "other-pw", "note": "remembered-bmc-secret"})"));
            CHECK(error.message.find("other-pw") == std::string::npos);
            CHECK(error.message.find("remembered-bmc-secret") == std::string::npos);
            CHECK(error.message.find("ipmi_password") != std::string::npos);
        }
    }

    TEST_CASE("redact: remembered secrets and credential members")
    {
        remember_secret("pa55word-one");
        remember_secrets_in(json{{"driver_info", {{"redfish_password", "pa55word-two"}, {"redfish_address", "10.0.0.1"}}}});
        const auto text = redact("a pa55word-one b pa55word-two c 10.0.0.1");
        CHECK(text == "a ****** b ****** c 10.0.0.1");
        CHECK(redact(R"({"ipmi_password": "x1", "token": "t", "ipmi_username": "admin"})") ==
              R"({"ipmi_password": "******", "token": "******", "ipmi_username": "admin"})");
        CHECK(redact(R"({\"ipmi_password\": \"x1\"})") == R"({\"ipmi_password\": \"******\"})");
        // A short secret inside a word is left alone: the message stays whole
        // and the stars do not tell where the password's letters are.
        remember_secret("p");
        CHECK(redact("1 port(s) created") == "1 port(s) created");
        CHECK(redact("login admin:p@192.0.2.1 refused") == "login admin:******@192.0.2.1 refused");
        CHECK(redact("pa55word-one.") == "******.");
        CHECK(is_secret_key("application_credential_secret"));
        CHECK_FALSE(is_secret_key("ipmi_address"));
    }

    TEST_CASE("retry_call: NodeLocked quickly, other retryable errors with backoff, final errors at once")
    {
        std::vector<std::chrono::milliseconds> sleeps;
        RetryPolicy policy;
        policy.seed = 42;
        policy.sleep = [&sleeps](std::chrono::milliseconds d) {
            sleeps.push_back(d);
            return true;
        };

        SUBCASE("locked twice, then success")
        {
            int calls = 0;
            auto result = retry_call([&] { return ++calls <= 2 ? failure(409, true, true) : ApiResult<int>(7); }, policy);
            REQUIRE(result.has_value());
            CHECK(*result == 7);
            CHECK(calls == 3);
            REQUIRE(sleeps.size() == 2);
            for (auto d : sleeps) {
                CHECK(d >= std::chrono::milliseconds(2000));
                CHECK(d <= std::chrono::milliseconds(3000));
            }
        }
        SUBCASE("503 backs off exponentially with jitter, up to max_retries")
        {
            int calls = 0;
            auto result = retry_call([&] { ++calls; return failure(503, true, false); }, policy);
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().http_status == 503);
            CHECK(calls == policy.max_retries + 1);
            REQUIRE(sleeps.size() == static_cast<size_t>(policy.max_retries));
            auto ceiling = policy.initial_backoff;
            for (auto d : sleeps) {
                CHECK(d >= ceiling / 2);
                CHECK(d <= ceiling);
                ceiling = std::min(ceiling * 2, policy.max_backoff);
            }
        }
        SUBCASE("a 400 is not retried")
        {
            int calls = 0;
            auto result = retry_call([&] { ++calls; return failure(400, false, false); }, policy);
            REQUIRE_FALSE(result.has_value());
            CHECK(calls == 1);
            CHECK(sleeps.empty());
        }
        SUBCASE("locked retries have their own cap")
        {
            policy.max_locked_retries = 3;
            int calls = 0;
            auto result = retry_call([&] { ++calls; return failure(409, true, true); }, policy);
            REQUIRE_FALSE(result.has_value());
            CHECK(result.error().node_locked);
            CHECK(calls == 4);
        }
        SUBCASE("a sleep interrupted by shutdown stops retrying")
        {
            policy.sleep = [](std::chrono::milliseconds) { return false; };
            int calls = 0;
            auto result = retry_call([&] { ++calls; return failure(0, true, false); }, policy);
            REQUIRE_FALSE(result.has_value());
            CHECK(calls == 1);
        }
    }

    TEST_CASE("ironic client: a server older than the minimum is refused with a clear message")
    {
        FakeHttpServer old_ironic([](const FakeRequest& request) -> FakeResponse {
            if (request.path == "/") {
                return {200, {}, ironic_root_body("1.1", "1.20")};
            }
            return {500, {}, "{}"};
        });
        IronicClient client(connection_to(old_ironic.url()));
        auto version = client.negotiate();
        REQUIRE_FALSE(version.has_value());
        CHECK(version.error().message ==
              "Ironic at " + old_ironic.url() + " supports API 1.1 to 1.20; metalsync needs at least 1.56");
        CHECK_FALSE(version.error().retryable);
        // and a call that negotiates on first use fails the same way, sending nothing else
        auto nodes = client.list_nodes();
        REQUIRE_FALSE(nodes.has_value());
        CHECK(nodes.error().message.find("needs at least 1.56") != std::string::npos);
        for (const auto& request : old_ironic.requests()) {
            CHECK(request.path == "/");
        }
    }

    TEST_CASE("ironic client: version and content type on every request; features only where supported")
    {
        FakeHttpServer ironic([](const FakeRequest& request) -> FakeResponse {
            if (request.path == "/") {
                return {200, {}, ironic_root_body("1.1", "1.60")};
            }
            if (request.path.starts_with("/v1/nodes?")) {
                return {200, {}, R"({"nodes": [{"uuid": "u1", "name": "n1", "provision_state": "active", "automated_clean": false,
                                   "boot_interface": "pxe", "maintenance": true, "driver_info": {"ipmi_password": "******"},
                                   "target_provision_state": null, "last_error": null}]})"};
            }
            if (request.path.starts_with("/v1/ports?")) {
                return {200, {}, R"({"ports": [{"uuid": "p1", "node_uuid": "u1", "address": "AA:BB:CC:DD:EE:FF", "pxe_enabled": false,
                                   "physical_network": null}, {"uuid": "p2", "node_uuid": "other", "address": "aa:aa:aa:aa:aa:aa"}]})"};
            }
            return {404, {}, ironic_fault("no such thing")};
        });
        IronicClient client(connection_to(ironic.url() + "/"));
        auto state = client.observe();
        REQUIRE_MESSAGE(state.has_value(), state.error().describe());
        CHECK(client.version() == ApiVersion{1, 60});
        CHECK(client.supports(60));
        CHECK_FALSE(client.supports(61));
        REQUIRE(state->nodes.size() == 1);
        const auto& node = state->nodes.at("n1");
        CHECK(node.automated_clean == false);
        CHECK(node.maintenance);
        CHECK(node.interfaces.at("boot") == "pxe");
        CHECK(node.target_provision_state.empty());
        REQUIRE(node.ports.size() == 1);
        CHECK(node.ports[0].mac == "aa:bb:cc:dd:ee:ff");
        CHECK_FALSE(node.ports[0].pxe_enabled);

        auto inventory = client.get_inventory("n1");
        REQUIRE_FALSE(inventory.has_value());
        CHECK(inventory.error().http_status == 406);
        CHECK_FALSE(inventory.error().retryable);
        CHECK(inventory.error().message.find("1.81") != std::string::npos);

        const auto requests = ironic.requests();
        REQUIRE(requests.size() == 3);
        for (const auto& request : requests) {
            CHECK(!request.header("x-openstack-ironic-api-version").empty());
            CHECK(request.header("content-type") == "application/json");
        }
        CHECK(requests[1].header("x-openstack-ironic-api-version") == "1.60");
        CHECK(requests[1].path.find("fields=uuid,name,") != std::string::npos);
        CHECK(requests[1].path.find("limit=1000") != std::string::npos);
    }

    TEST_CASE("ironic client: transport errors are retryable with status 0")
    {
        IronicClient client(connection_to("http://127.0.0.1:" + std::to_string(free_port())));
        auto nodes = client.list_nodes();
        REQUIRE_FALSE(nodes.has_value());
        CHECK(nodes.error().http_status == 0);
        CHECK(nodes.error().retryable);
        CHECK(nodes.error().operation == "GET /");
    }

    TEST_CASE("ironic client: Keystone token is cached and renewed once after a 401")
    {
        std::atomic<int> issued{0};
        std::atomic<bool> reject_all{false};
        std::string base;
        FakeHttpServer server([&](const FakeRequest& request) -> FakeResponse {
            if (request.method == "POST" && request.path == "/identity/v3/auth/tokens") {
                const auto n = ++issued;
                const json catalog = json::array(
                    {{{"type", "baremetal"}, {"endpoints", json::array({{{"interface", "public"}, {"region_id", nullptr}, {"url", base + "/baremetal"}}})}}});
                return {201, {{"X-Subject-Token", "tok-" + std::to_string(n)}},
                        json{{"token", {{"expires_at", "2099-12-31T23:59:59.000000Z"}, {"catalog", catalog}}}}.dump()};
            }
            if (request.path == "/baremetal/") {
                return {200, {}, ironic_root_body("1.1", "1.82")};
            }
            if (request.path.starts_with("/baremetal/v1/nodes?")) {
                if (reject_all || request.header("x-auth-token") == "tok-1") {
                    return {401, {}, R"({"error": {"message": "The request you have made requires authentication.", "code": 401}})"};
                }
                return {200, {}, R"({"nodes": []})"};
            }
            return {404, {}, "{}"};
        });
        base = server.url();
        KeystoneCredentials credentials;
        credentials.method = KeystoneCredentials::Method::application_credential;
        credentials.auth_url = server.url() + "/identity";
        credentials.application_credential_id = "app-id";
        credentials.application_credential_secret = "app-secret-777";
        IronicClient client(connection_to("", credentials));

        auto nodes = client.list_nodes();
        REQUIRE_MESSAGE(nodes.has_value(), nodes.error().describe());
        CHECK(issued == 2);  // tok-1 refused, tok-2 accepted
        CHECK(client.endpoint() == server.url() + "/baremetal");
        REQUIRE(client.list_nodes().has_value());
        CHECK(issued == 2);  // cached

        const auto first = json::parse(server.requests().front().body);
        CHECK(first["auth"]["identity"]["methods"][0] == "application_credential");
        CHECK(first["auth"]["identity"]["application_credential"]["id"] == "app-id");

        reject_all = true;
        auto refused = client.list_nodes();
        REQUIRE_FALSE(refused.has_value());
        CHECK(refused.error().http_status == 401);
        CHECK(issued == 3);  // exactly one re-authentication per call
        CHECK(refused.error().describe().find("app-secret-777") == std::string::npos);
        CHECK(refused.error().describe().find("tok-") == std::string::npos);
    }

    TEST_CASE("keystone: a token about to expire is renewed; a failed login names Keystone")
    {
        std::atomic<int> issued{0};
        std::atomic<bool> fail{false};
        FakeHttpServer server([&](const FakeRequest&) -> FakeResponse {
            if (fail) {
                return {401, {}, R"({"error": {"message": "The request you have made requires authentication.", "code": 401}})"};
            }
            ++issued;
            return {201, {{"X-Subject-Token", "t"}}, R"({"token": {"expires_at": "2000-01-01T00:00:00Z", "catalog": []}})"};
        });
        KeystoneCredentials credentials;
        credentials.auth_url = server.url();
        credentials.username = "u";
        credentials.password = "keystone-secret-55";
        KeystoneSession session(credentials, {});
        REQUIRE(session.token().has_value());
        REQUIRE(session.token().has_value());
        CHECK(issued == 2);  // expired at once, so never cached
        auto endpoint = session.endpoint("baremetal");
        REQUIRE_FALSE(endpoint.has_value());
        CHECK(endpoint.error().message.find("baremetal") != std::string::npos);

        fail = true;
        auto token = session.token(true);
        REQUIRE_FALSE(token.has_value());
        CHECK(token.error().http_status == 401);
        CHECK(token.error().message.find("Keystone") != std::string::npos);
        CHECK(token.error().message.find("keystone-secret-55") == std::string::npos);
        CHECK(server.requests().back().path == "/v3/auth/tokens");
    }

    TEST_CASE("clouds.yaml: every auth type, cloud selection, TLS and missing keys")
    {
        const std::string yaml = R"(
clouds:
  bifrost:
    auth_type: none
    baremetal_endpoint_override: http://192.0.2.1:6385
  bifrost-auth:
    auth_type: none
    auth:
      endpoint: http://192.0.2.2:6385/
  plain:
    auth_type: none
    endpoint: http://192.0.2.3:6385
  basic:
    auth_type: http_basic
    auth:
      username: admin
      password: basic-secret
    baremetal_endpoint_override: https://192.0.2.4:6385
    cacert: /etc/ssl/ironic-ca.pem
    cert: /etc/ssl/client.pem
    key: /etc/ssl/client.key
  keystone:
    auth_type: password
    auth:
      auth_url: https://keystone.example:5000/v3
      username: metalsync
      password: ks-secret
      project_name: baremetal
      user_domain_name: users
      project_domain_name: projects
    region_name: RegionTwo
    interface: internal
    verify: false
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000
      application_credential_id: abc
      application_credential_secret: app-secret
  broken-basic:
    auth_type: http_basic
    auth:
      username: admin
      password: broken-secret
  no-password:
    auth_type: password
    auth:
      auth_url: https://keystone.example:5000
      username: metalsync
  weird:
    auth_type: token
)";
        const std::filesystem::path file = "/test/clouds.yaml";
        auto parse = [&](const std::string& name) { return parse_cloud_config(yaml, name, file); };

        SUBCASE("auth_type none, all three endpoint spellings")
        {
            CHECK(parse("bifrost")->endpoint == "http://192.0.2.1:6385");
            CHECK(parse("bifrost-auth")->endpoint == "http://192.0.2.2:6385/");
            CHECK(parse("plain")->endpoint == "http://192.0.2.3:6385");
            CHECK(parse("plain")->auth_type == CloudConfig::AuthType::none);
            auto connection = ironic_connection_from_cloud(*parse("bifrost"));
            CHECK(std::holds_alternative<NoAuth>(connection.auth));
        }
        SUBCASE("http_basic with TLS files")
        {
            auto cloud = parse("basic");
            REQUIRE(cloud.has_value());
            CHECK(cloud->auth_type == CloudConfig::AuthType::http_basic);
            CHECK(cloud->username == "admin");
            CHECK(cloud->password == "basic-secret");
            CHECK(cloud->tls.ca_file == "/etc/ssl/ironic-ca.pem");
            CHECK(cloud->tls.client_cert == "/etc/ssl/client.pem");
            CHECK(cloud->tls.client_key == "/etc/ssl/client.key");
            CHECK_FALSE(cloud->tls.insecure);
            auto connection = ironic_connection_from_cloud(*cloud);
            REQUIRE(std::holds_alternative<BasicAuth>(connection.auth));
            CHECK(std::get<BasicAuth>(connection.auth).password == "basic-secret");
            CHECK(connection.tls.ca_file == "/etc/ssl/ironic-ca.pem");
        }
        SUBCASE("Keystone password")
        {
            auto cloud = parse("keystone");
            REQUIRE(cloud.has_value());
            CHECK(cloud->auth_type == CloudConfig::AuthType::password);
            CHECK(cloud->keystone.method == KeystoneCredentials::Method::password);
            CHECK(cloud->keystone.auth_url == "https://keystone.example:5000/v3");
            CHECK(cloud->keystone.username == "metalsync");
            CHECK(cloud->keystone.password == "ks-secret");
            CHECK(cloud->keystone.project_name == "baremetal");
            CHECK(cloud->keystone.user_domain_name == "users");
            CHECK(cloud->keystone.project_domain_name == "projects");
            CHECK(cloud->keystone.region_name == "RegionTwo");
            CHECK(cloud->keystone.interface == "internal");
            CHECK(cloud->tls.insecure);
            CHECK(cloud->endpoint.empty());
            CHECK(std::holds_alternative<KeystoneCredentials>(ironic_connection_from_cloud(*cloud).auth));
        }
        SUBCASE("Keystone application credential")
        {
            auto cloud = parse("appcred");
            REQUIRE(cloud.has_value());
            CHECK(cloud->auth_type == CloudConfig::AuthType::application_credential);
            CHECK(cloud->keystone.method == KeystoneCredentials::Method::application_credential);
            CHECK(cloud->keystone.application_credential_id == "abc");
            CHECK(cloud->keystone.application_credential_secret == "app-secret");
            CHECK(cloud->keystone.interface == "public");
        }
        SUBCASE("missing keys are named with the file, secrets are not")
        {
            auto basic = parse("broken-basic");
            REQUIRE_FALSE(basic.has_value());
            CHECK(basic.error().find("/test/clouds.yaml") != std::string::npos);
            CHECK(basic.error().find("auth.endpoint") != std::string::npos);
            CHECK(basic.error().find("broken-secret") == std::string::npos);

            auto keystone = parse("no-password");
            REQUIRE_FALSE(keystone.has_value());
            CHECK(keystone.error().find("missing key auth.password") != std::string::npos);

            auto weird = parse("weird");
            REQUIRE_FALSE(weird.has_value());
            CHECK(weird.error().find("unsupported auth_type 'token'") != std::string::npos);

            auto unknown = parse("nope");
            REQUIRE_FALSE(unknown.has_value());
            CHECK(unknown.error().find("no cloud named 'nope'") != std::string::npos);

            auto empty = parse_cloud_config("foo: 1\n", "x", file);
            REQUIRE_FALSE(empty.has_value());
            CHECK(empty.error().find("missing key clouds") != std::string::npos);

            auto bad = parse_cloud_config("clouds: [unclosed\n", "x", file);
            REQUIRE_FALSE(bad.has_value());
            CHECK(bad.error().find("not valid YAML") != std::string::npos);
        }
        SUBCASE("OS_CLOUD picks the cloud when none is named")
        {
            ScopedEnv env("OS_CLOUD", "appcred");
            CHECK(parse("")->name == "appcred");
            CHECK(parse("bifrost")->name == "bifrost");  // an explicit name wins
        }
        SUBCASE("without a name or OS_CLOUD: the only cloud, or an error listing them")
        {
            ScopedEnv env("OS_CLOUD", nullptr);
            auto several = parse("");
            REQUIRE_FALSE(several.has_value());
            CHECK(several.error().find("bifrost, bifrost-auth") != std::string::npos);
            auto single = parse_cloud_config("clouds:\n  only:\n    auth_type: none\n    endpoint: http://x:6385\n", "", file);
            REQUIRE(single.has_value());
            CHECK(single->name == "only");
        }
    }

    TEST_CASE("clouds.yaml: search order and loading from a file")
    {
        const auto candidates = clouds_yaml_candidates(std::filesystem::path("/x/my.yaml"), "/work", "/home/u");
        REQUIRE(candidates.size() == 4);
        CHECK(candidates[0] == "/x/my.yaml");
        CHECK(candidates[1] == "/work/clouds.yaml");
        CHECK(candidates[2] == "/home/u/.config/openstack/clouds.yaml");
        CHECK(candidates[3] == "/etc/openstack/clouds.yaml");
        CHECK(clouds_yaml_candidates(std::nullopt, "/work", "").size() == 2);

        TempDir dir("clouds");
        write_file(dir / "clouds.yaml", "clouds:\n  bifrost:\n    auth_type: none\n    baremetal_endpoint_override: http://127.0.0.1:6385\n");
        auto cloud = load_cloud_config(dir / "clouds.yaml", "bifrost");
        REQUIRE_MESSAGE(cloud.has_value(), cloud.error());
        CHECK(cloud->file == dir / "clouds.yaml");
        CHECK(cloud->endpoint == "http://127.0.0.1:6385");

        auto missing = load_cloud_config(dir / "nope.yaml", "bifrost");
        REQUIRE_FALSE(missing.has_value());
        CHECK(missing.error().find("nope.yaml") != std::string::npos);

        ScopedEnv home("HOME", dir.path().c_str());
        write_file(dir / ".config/openstack/clouds.yaml",
                   "clouds:\n  home:\n    auth_type: none\n    endpoint: http://127.0.0.2:6385\n");
        auto from_home = load_cloud_config(std::nullopt, "home");
        // ./clouds.yaml comes first when the test runs where one exists
        if (!std::filesystem::exists("clouds.yaml")) {
            REQUIRE_MESSAGE(from_home.has_value(), from_home.error());
            CHECK(from_home->endpoint == "http://127.0.0.2:6385");
        }
    }

    TEST_CASE("http: basic authorization and URL escaping")
    {
        CHECK(basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        CHECK(basic_authorization("a", "b") == "Basic YTpi");
        CHECK(basic_authorization("ab", "c") == "Basic YWI6Yw==");
        CHECK(url_escape("node-01_a.b~") == "node-01_a.b~");
        CHECK(url_escape("a b/c") == "a%20b%2Fc");
    }
}
