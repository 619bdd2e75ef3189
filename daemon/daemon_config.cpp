#include "daemon/daemon_config.hpp"
#include "daemon/metrics_server.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "sources/yaml_reader.hpp"

namespace metalsync {

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text)
{
    std::size_t i = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
        ++i;
    }
    if (i == 0 || i > 9) {
        return std::nullopt;
    }
    long long value = std::stoll(text.substr(0, i));
    std::string unit = text.substr(i);
    if (unit == "ms") return std::chrono::milliseconds(value);
    if (unit == "s") return std::chrono::milliseconds(value * 1000);
    if (unit == "m") return std::chrono::milliseconds(value * 60 * 1000);
    if (unit == "h") return std::chrono::milliseconds(value * 3600 * 1000);
    return std::nullopt;
}

namespace {

// A Kubernetes label value: at most 63 characters of [A-Za-z0-9._-],
// beginning and ending with an alphanumeric character.
bool valid_label_value(const std::string& value)
{
    if (value.empty() || value.size() > 63) return false;
    auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    if (!alnum(value.front()) || !alnum(value.back())) return false;
    for (char c : value) {
        if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
    }
    return true;
}

class ConfigParser {
public:
    ConfigParser(const std::string& file, Diagnostics& diagnostics) : m_reader(file, diagnostics) {}

    void parse(const YAML::Node& root, DaemonConfig& cfg)
    {
        if (!m_reader.mapping(root, "", {"instance", "stateDir", "socket", "socketGroup", "credentialsDir", "git",
                                         "ironic", "kubernetes", "provider", "limits", "log", "metrics"})) {
            if (!root.IsMap()) return;
        }
        if (auto v = root["instance"]) {
            str(v, "instance", cfg.instance);
            if (!valid_label_value(cfg.instance)) {
                m_reader.error(v, "instance",
                               "must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
                               "digit (it is written to Ironic's extra and used as a Kubernetes label value)");
            }
        }
        path(root["stateDir"], "stateDir", cfg.state_dir);
        path(root["socket"], "socket", cfg.socket);
        str(root["socketGroup"], "socketGroup", cfg.socket_group);
        path(root["credentialsDir"], "credentialsDir", cfg.credentials_dir);
        if (auto git = root["git"]) {
            parse_git(git, cfg);
        }
        if (auto ironic = root["ironic"]) {
            auto& s = cfg.ironic;
            if (m_reader.mapping(ironic, "ironic", {"cloud", "endpoint", "cloudsFile", "caFile", "clientCert",
                                                    "clientKey", "insecure", "timeout"})) {
                str(ironic["cloud"], "ironic.cloud", s.cloud);
                str(ironic["endpoint"], "ironic.endpoint", s.endpoint);
                path(ironic["cloudsFile"], "ironic.cloudsFile", s.clouds_file);
                path(ironic["caFile"], "ironic.caFile", s.ca_file);
                path(ironic["clientCert"], "ironic.clientCert", s.client_cert);
                path(ironic["clientKey"], "ironic.clientKey", s.client_key);
                flag(ironic["insecure"], "ironic.insecure", s.insecure);
                duration(ironic["timeout"], "ironic.timeout", s.timeout);
                if (!s.endpoint.empty() && !s.cloud.empty()) {
                    m_reader.error(ironic["endpoint"], "ironic.endpoint", "set either ironic.cloud or ironic.endpoint, not both");
                }
                if (!s.endpoint.empty() && !is_url(s.endpoint)) {
                    m_reader.error(ironic["endpoint"], "ironic.endpoint", "'" + s.endpoint + "' is not an http(s) URL");
                }
            }
        }
        if (auto k = root["kubernetes"]) {
            if (m_reader.mapping(k, "kubernetes", {"kubeconfig", "context", "namespace", "resyncInterval", "timeout"})) {
                path(k["kubeconfig"], "kubernetes.kubeconfig", cfg.kubernetes.kubeconfig);
                str(k["context"], "kubernetes.context", cfg.kubernetes.context);
                str(k["namespace"], "kubernetes.namespace", cfg.kubernetes.namespace_);
                duration(k["resyncInterval"], "kubernetes.resyncInterval", cfg.kubernetes.resync_interval);
                duration(k["timeout"], "kubernetes.timeout", cfg.kubernetes.timeout);
            }
        }
        if (auto p = root["provider"]) {
            if (m_reader.mapping(p, "provider", {"enabled"})) {
                flag(p["enabled"], "provider.enabled", cfg.provider.enabled);
            }
        }
        if (auto l = root["limits"]) {
            if (m_reader.mapping(l, "limits", {"ironicQPS", "maxProvisioning", "perBMC", "kubernetesQPS", "workers"})) {
                positive(l["ironicQPS"], "limits.ironicQPS", cfg.limits.ironic_qps);
                positive(l["kubernetesQPS"], "limits.kubernetesQPS", cfg.limits.kubernetes_qps);
                integer(l["maxProvisioning"], "limits.maxProvisioning", 1, 1000, cfg.limits.max_provisioning);
                integer(l["perBMC"], "limits.perBMC", 1, 16, cfg.limits.per_bmc);
                integer(l["workers"], "limits.workers", 1, 256, cfg.limits.workers);
            }
        }
        if (auto l = root["log"]) {
            if (m_reader.mapping(l, "log", {"level", "format"})) {
                if (auto v = l["level"]) {
                    if (auto s = m_reader.one_of(v, "log.level", {"trace", "debug", "info", "warn", "error"})) cfg.log_level = *s;
                }
                if (auto v = l["format"]) {
                    if (auto s = m_reader.one_of(v, "log.format", {"text", "json"})) cfg.log_format = *s;
                }
            }
        }
        if (auto m = root["metrics"]) {
            if (m_reader.mapping(m, "metrics", {"listen"})) {
                str(m["listen"], "metrics.listen", cfg.metrics_listen);
                if (!cfg.metrics_listen.empty()) {
                    if (auto parsed = parse_listen_address(cfg.metrics_listen); !parsed) {
                        m_reader.error(m["listen"], "metrics.listen",
                                       parsed.error() + "; \"\" disables the listener");
                    }
                }
            }
        }
    }

private:
    void parse_git(const YAML::Node& git, DaemonConfig& cfg)
    {
        if (!m_reader.mapping(git, "git", {"url", "branch", "tag", "commit", "path", "tokenFile", "username",
                                           "sshKeyFile", "knownHostsFile", "caFile", "pollInterval",
                                           "retryInterval", "connectTimeout", "fetchTimeout"})) {
            if (!git.IsMap()) return;
        }
        auto& g = cfg.git;
        cfg.has_git = true;
        if (!git["url"]) {
            m_reader.error(git, "git.url", "required field is missing");
        }
        str(git["url"], "git.url", g.url);
        str(git["branch"], "git.branch", g.branch);
        str(git["tag"], "git.tag", g.tag);
        str(git["commit"], "git.commit", g.commit);
        int refs = (g.branch.empty() ? 0 : 1) + (g.tag.empty() ? 0 : 1) + (g.commit.empty() ? 0 : 1);
        if (refs > 1) {
            m_reader.error(git, "git", "set only one of branch, tag and commit");
        }
        str(git["path"], "git.path", g.path);
        str(git["username"], "git.username", g.username);
        path(git["tokenFile"], "git.tokenFile", g.token_file);
        path(git["sshKeyFile"], "git.sshKeyFile", g.ssh_key_file);
        path(git["knownHostsFile"], "git.knownHostsFile", g.known_hosts_file);
        path(git["caFile"], "git.caFile", g.ca_file);
        duration(git["pollInterval"], "git.pollInterval", cfg.poll_interval);
        duration(git["retryInterval"], "git.retryInterval", cfg.retry_interval);
        duration(git["connectTimeout"], "git.connectTimeout", g.connect_timeout);
        duration(git["fetchTimeout"], "git.fetchTimeout", g.fetch_timeout);
    }

    void str(const YAML::Node& n, const std::string& field, std::string& out)
    {
        if (n) {
            if (auto s = m_reader.string(n, field)) out = *s;
        }
    }
    void path(const YAML::Node& n, const std::string& field, std::filesystem::path& out)
    {
        if (n) {
            if (auto s = m_reader.string(n, field)) out = *s;
        }
    }
    void flag(const YAML::Node& n, const std::string& field, bool& out)
    {
        if (n) {
            if (auto b = m_reader.boolean(n, field)) out = *b;
        }
    }
    void integer(const YAML::Node& n, const std::string& field, int min, int max, int& out)
    {
        if (n) {
            if (auto i = m_reader.integer(n, field, min, max)) out = static_cast<int>(*i);
        }
    }
    void positive(const YAML::Node& n, const std::string& field, double& out)
    {
        if (n) {
            if (auto d = m_reader.number(n, field)) {
                if (*d <= 0) {
                    m_reader.error(n, field, "must be greater than 0");
                } else {
                    out = *d;
                }
            }
        }
    }
    void duration(const YAML::Node& n, const std::string& field, std::chrono::milliseconds& out)
    {
        if (!n) return;
        auto s = m_reader.string(n, field);
        if (!s) return;
        auto d = parse_duration(*s);
        if (!d || d->count() <= 0) {
            m_reader.error(n, field, "'" + *s + "' is not a duration (a number and ms, s, m or h: 90s, 2m)");
            return;
        }
        out = *d;
    }

    YamlReader m_reader;
};

} // namespace

std::expected<DaemonConfig, Diagnostics> parse_daemon_config(const std::string& path_for_errors, const std::string& content)
{
    Diagnostics diagnostics;
    DaemonConfig cfg;
    cfg.source_file = path_for_errors;
    YAML::Node root;
    try {
        root = YAML::Load(content);
    } catch (const YAML::Exception& e) {
        diagnostics.push_back({path_for_errors, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg});
        return std::unexpected(diagnostics);
    }
    if (root.IsNull()) {
        root = YAML::Node(YAML::NodeType::Map);
    }
    ConfigParser(path_for_errors, diagnostics).parse(root, cfg);
    if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY"); creds != nullptr && *creds != '\0') {
        // systemd's LoadCredential= files first; names it does not hold are
        // still read from credentialsDir.
        cfg.credentials_fallback_dir = cfg.credentials_dir;
        cfg.credentials_dir = creds;
    }
    cfg.git.state_dir = cfg.state_dir;
    if (!diagnostics.empty()) {
        return std::unexpected(diagnostics);
    }
    return cfg;
}

std::expected<DaemonConfig, Diagnostics> load_daemon_config(const std::filesystem::path& path)
{
    std::ifstream in(path);
    if (!in) {
        return std::unexpected(Diagnostics{{path.string(), 0, 0, "", "cannot read the configuration file"}});
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_daemon_config(path.string(), ss.str());
}

} // namespace metalsync
