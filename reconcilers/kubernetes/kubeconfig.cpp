#include "reconcilers/kubernetes/kubeconfig.hpp"

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/kubernetes/kube_client.hpp"

namespace metalsync {
namespace {

namespace fs = std::filesystem;

// Far above any real kubeconfig; a bigger file is a mistake, not a config.
constexpr std::uintmax_t k_max_kubeconfig_bytes = 16U * 1024U * 1024U;

// Every message is about one file; this prefixes it.
struct Where {
    std::string file;

    [[nodiscard]] std::unexpected<std::string> error(const std::string& text) const
    {
        return std::unexpected("kubeconfig " + file + ": " + text);
    }
};

std::expected<std::string, std::string> read_small_file(const fs::path& path)
{
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) {
        return std::unexpected(ec.message());
    }
    if (size > k_max_kubeconfig_bytes) {
        return std::unexpected(std::string("larger than 16 MiB"));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::unexpected(std::string("cannot be read"));
    }
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// A string member of a map; nullopt when absent or null. An error when it is
// there but not a scalar (its value is never quoted: it may be a secret).
std::expected<std::optional<std::string>, std::string> optional_string(const YAML::Node& map, const char* key,
                                                                       const std::string& where)
{
    const auto value = map[key];
    if (!value || value.IsNull()) {
        return std::optional<std::string>();
    }
    if (!value.IsScalar()) {
        return std::unexpected(where + key + " must be a string");
    }
    return std::optional<std::string>(value.as<std::string>());
}

std::string trim(std::string text)
{
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

// Named entries of one top-level list (clusters, users, contexts): name -> body.
std::expected<std::map<std::string, YAML::Node>, std::string> named_list(const YAML::Node& root, const char* list,
                                                                         const char* body_key, const Where& where)
{
    std::map<std::string, YAML::Node> out;
    const auto node = root[list];
    if (!node || node.IsNull()) {
        return out;
    }
    if (!node.IsSequence()) {
        return where.error(std::string(list) + " must be a list");
    }
    std::size_t index = 0;
    for (const auto& entry : node) {
        const std::string at = std::string(list) + "[" + std::to_string(index++) + "]";
        if (!entry.IsMap()) {
            return where.error(at + " must be a mapping with name and " + body_key);
        }
        const auto name = entry["name"];
        if (!name || !name.IsScalar() || name.as<std::string>().empty()) {
            return where.error(at + " has no name");
        }
        const auto key = name.as<std::string>();
        auto body = entry[body_key];
        if (body && !body.IsNull() && !body.IsMap()) {
            return where.error(at + " (" + key + "): " + body_key + " must be a mapping");
        }
        // client-go refuses duplicate names too; silently taking one would
        // make the choice depend on the order of the file.
        if (!out.emplace(key, body && body.IsMap() ? body : YAML::Node(YAML::NodeType::Map)).second) {
            return where.error(std::string(body_key) + " name '" + key + "' is defined twice in " + list);
        }
    }
    return out;
}

fs::path resolve(const fs::path& kubeconfig, const std::string& reference)
{
    fs::path path(reference);
    if (path.is_relative()) {
        path = kubeconfig.parent_path() / path;
    }
    return path;
}

// `name-data` (base64 PEM) or `name` (a file), never both, as client-go checks.
// Returns {pem, path}: at most one is non-empty.
std::expected<std::pair<std::string, std::string>, std::string>
pem_or_file(const YAML::Node& map, const std::string& name, const fs::path& kubeconfig, const std::string& where)
{
    const auto data_key = name + "-data";
    auto data = optional_string(map, data_key.c_str(), where);
    if (!data) {
        return std::unexpected(data.error());
    }
    auto file = optional_string(map, name.c_str(), where);
    if (!file) {
        return std::unexpected(file.error());
    }
    const bool has_data = data->has_value() && !(*data)->empty();
    const bool has_file = file->has_value() && !(*file)->empty();
    if (has_data && has_file) {
        return std::unexpected(where + "both " + name + " and " + data_key + " are set; keep one");
    }
    if (has_data) {
        // Go's decoder, which kubectl uses, skips line breaks.
        std::string encoded = **data;
        std::erase_if(encoded, [](char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; });
        auto pem = base64_decode(encoded);
        if (!pem || pem->empty()) {
            return std::unexpected(where + data_key + " is not valid base64");
        }
        return std::pair{std::move(*pem), std::string()};
    }
    if (has_file) {
        const auto path = resolve(kubeconfig, **file);
        std::error_code ec;
        if (!fs::is_regular_file(path, ec)) {
            return std::unexpected(where + name + " " + path.string() + ": no such file");
        }
        return std::pair{std::string(), path.string()};
    }
    return std::pair{std::string(), std::string()};
}

std::expected<bool, std::string> boolean(const YAML::Node& map, const char* key, const std::string& where)
{
    auto text = optional_string(map, key, where);
    if (!text) {
        return std::unexpected(text.error());
    }
    if (!text->has_value()) {
        return false;
    }
    const auto& v = **text;
    if (v == "true" || v == "True" || v == "TRUE") {
        return true;
    }
    if (v == "false" || v == "False" || v == "FALSE") {
        return false;
    }
    return std::unexpected(where + key + " must be true or false");
}

std::expected<void, std::string> read_cluster(const YAML::Node& cluster, const std::string& name, const fs::path& file,
                                              KubeConnection& out)
{
    const std::string where = "kubeconfig " + file.string() + ": cluster " + name + ": ";
    auto server = optional_string(cluster, "server", where);
    if (!server) {
        return std::unexpected(server.error());
    }
    if (!server->has_value() || (*server)->empty()) {
        return std::unexpected(where + "missing key server");
    }
    out.server = **server;
    while (out.server.ends_with('/')) {
        out.server.pop_back();
    }
    if (!out.server.starts_with("https://") && !out.server.starts_with("http://")) {
        return std::unexpected(where + "server " + out.server + " is not an https:// or http:// URL");
    }
    // Honouring these takes more than libcurl's defaults; ignoring them would
    // fail later with a confusing TLS or connection error.
    for (const char* key : {"tls-server-name", "proxy-url"}) {
        if (const auto value = cluster[key]; value && !value.IsNull()) {
            return std::unexpected(where + key + " is not supported");
        }
    }
    auto ca = pem_or_file(cluster, "certificate-authority", file, where);
    if (!ca) {
        return std::unexpected(ca.error());
    }
    out.tls.ca_pem = std::move(ca->first);
    out.tls.ca_file = std::move(ca->second);
    auto insecure = boolean(cluster, "insecure-skip-tls-verify", where);
    if (!insecure) {
        return std::unexpected(insecure.error());
    }
    out.tls.insecure = *insecure;
    return {};
}

std::expected<void, std::string> read_user(const YAML::Node& user, const std::string& name, const fs::path& file,
                                           KubeConnection& out)
{
    const std::string where = "kubeconfig " + file.string() + ": user " + name + ": ";
    const std::string not_supported =
        ", which metalsync does not support; use a client certificate or a token (for example a ServiceAccount token)";
    if (const auto exec = user["exec"]; exec && !exec.IsNull()) {
        std::string command = "no command";
        if (exec.IsMap() && exec["command"] && exec["command"].IsScalar()) {
            command = exec["command"].as<std::string>();
        }
        return std::unexpected("kubeconfig " + file.string() + ": user " + name + " uses an exec credential plugin (" +
                               command + ")" + not_supported);
    }
    if (const auto provider = user["auth-provider"]; provider && !provider.IsNull()) {
        std::string provider_name = "unnamed";
        if (provider.IsMap() && provider["name"] && provider["name"].IsScalar()) {
            provider_name = provider["name"].as<std::string>();
        }
        return std::unexpected("kubeconfig " + file.string() + ": user " + name + " uses an auth-provider plugin (" +
                               provider_name + ")" + not_supported);
    }
    for (const char* key : {"username", "password"}) {
        if (const auto value = user[key]; value && !value.IsNull()) {
            return std::unexpected("kubeconfig " + file.string() + ": user " + name +
                                   " uses basic authentication (username and password)" + not_supported);
        }
    }
    for (const char* key : {"as", "as-groups", "as-uid", "as-user-extra"}) {
        if (const auto value = user[key]; value && !value.IsNull()) {
            return std::unexpected(where + "impersonation (" + key + ") is not supported");
        }
    }

    auto cert = pem_or_file(user, "client-certificate", file, where);
    if (!cert) {
        return std::unexpected(cert.error());
    }
    auto key = pem_or_file(user, "client-key", file, where);
    if (!key) {
        return std::unexpected(key.error());
    }
    const bool has_cert = !cert->first.empty() || !cert->second.empty();
    const bool has_key = !key->first.empty() || !key->second.empty();
    if (has_cert != has_key) {
        return std::unexpected(
            where + (has_cert ? "client-certificate without client-key" : "client-key without client-certificate"));
    }
    out.tls.client_cert_pem = std::move(cert->first);
    out.tls.client_cert = std::move(cert->second);
    out.tls.client_key_pem = std::move(key->first);
    out.tls.client_key = std::move(key->second);
    remember_secret(out.tls.client_key_pem);

    auto token = optional_string(user, "token", where);
    if (!token) {
        return std::unexpected(token.error());
    }
    auto token_file = optional_string(user, "tokenFile", where);
    if (!token_file) {
        return std::unexpected(token_file.error());
    }
    if (token->has_value()) {
        out.bearer_token = trim(**token);
    }
    if (token_file->has_value() && !(*token_file)->empty()) {
        // As client-go: an inline token is used first, the file is what a 401 re-reads.
        out.token_file = resolve(file, **token_file);
        if (out.bearer_token.empty()) {
            auto text = read_small_file(out.token_file);
            if (!text) {
                return std::unexpected(where + "tokenFile " + out.token_file.string() + ": " + text.error());
            }
            out.bearer_token = trim(std::move(*text));
            if (out.bearer_token.empty()) {
                return std::unexpected(where + "tokenFile " + out.token_file.string() + " is empty");
            }
        }
    }
    remember_secret(out.bearer_token);
    return {};
}

} // namespace

std::expected<KubeConnection, std::string> parse_kubeconfig(const fs::path& path_for_errors, const std::string& content,
                                                            const std::string& context)
{
    const Where where{path_for_errors.string()};
    YAML::Node root;
    try {
        root = YAML::Load(content);
    } catch (const YAML::Exception& e) {
        // yaml-cpp's message has a position and a reason, never the document.
        return where.error("not valid YAML: " + e.msg);
    }
    if (!root.IsMap()) {
        return where.error("not a kubeconfig (expected a mapping with clusters, users and contexts)");
    }
    try {
        auto clusters = named_list(root, "clusters", "cluster", where);
        if (!clusters) {
            return std::unexpected(clusters.error());
        }
        auto users = named_list(root, "users", "user", where);
        if (!users) {
            return std::unexpected(users.error());
        }
        auto contexts = named_list(root, "contexts", "context", where);
        if (!contexts) {
            return std::unexpected(contexts.error());
        }

        std::string context_name = context;
        if (context_name.empty()) {
            auto current = optional_string(root, "current-context", "kubeconfig " + where.file + ": ");
            if (!current) {
                return std::unexpected(current.error());
            }
            context_name = current->value_or("");
            if (context_name.empty()) {
                return where.error("no current-context set; name the context to use");
            }
        }
        const auto found = contexts->find(context_name);
        if (found == contexts->end()) {
            return where.error("no context named '" + context_name + "'");
        }
        const auto& ctx = found->second;
        const std::string ctx_where = "kubeconfig " + where.file + ": context " + context_name + ": ";

        KubeConnection out;
        out.file = path_for_errors;
        out.context = context_name;

        auto cluster_name = optional_string(ctx, "cluster", ctx_where);
        if (!cluster_name) {
            return std::unexpected(cluster_name.error());
        }
        if (!cluster_name->has_value() || (*cluster_name)->empty()) {
            return std::unexpected(ctx_where + "missing key cluster");
        }
        const auto cluster = clusters->find(**cluster_name);
        if (cluster == clusters->end()) {
            return std::unexpected(ctx_where + "no cluster named '" + **cluster_name + "'");
        }
        if (auto ok = read_cluster(cluster->second, cluster->first, path_for_errors, out); !ok) {
            return std::unexpected(ok.error());
        }

        auto user_name = optional_string(ctx, "user", ctx_where);
        if (!user_name) {
            return std::unexpected(user_name.error());
        }
        // A context without a user is anonymous access, as kubectl allows.
        if (user_name->has_value() && !(*user_name)->empty()) {
            const auto user = users->find(**user_name);
            if (user == users->end()) {
                return std::unexpected(ctx_where + "no user named '" + **user_name + "'");
            }
            if (auto ok = read_user(user->second, user->first, path_for_errors, out); !ok) {
                return std::unexpected(ok.error());
            }
        }

        auto ns = optional_string(ctx, "namespace", ctx_where);
        if (!ns) {
            return std::unexpected(ns.error());
        }
        if (ns->has_value() && !(*ns)->empty()) {
            out.default_namespace = **ns;
        }
        if (out.tls.insecure && (!out.tls.ca_file.empty() || !out.tls.ca_pem.empty())) {
            // kubectl refuses this too: which of the two did the author mean?
            return std::unexpected("kubeconfig " + where.file + ": cluster " + **cluster_name +
                                   ": insecure-skip-tls-verify together with a certificate authority");
        }
        return out;
    } catch (const YAML::Exception& e) {
        return where.error("unexpected structure: " + e.msg);
    }
}

std::expected<KubeConnection, std::string> load_kubeconfig(const fs::path& path, const std::string& context)
{
    std::error_code ec;
    fs::path file = path;
    if (file.empty()) {
        // Only the first existing entry of $KUBECONFIG is read: kubectl merges
        // them all, which metalsync does not support (one file, one context).
        if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
            std::stringstream entries(env);
            std::string entry;
            std::string tried;
            while (std::getline(entries, entry, ':')) {
                if (entry.empty()) {
                    continue;
                }
                if (fs::exists(entry, ec)) {
                    file = entry;
                    break;
                }
                tried += (tried.empty() ? "" : ", ") + entry;
            }
            if (file.empty()) {
                return std::unexpected("no kubeconfig found: no file of $KUBECONFIG exists (" + tried + ")");
            }
        } else {
            const char* home = std::getenv("HOME");
            if (home == nullptr || *home == '\0') {
                return std::unexpected(std::string("no kubeconfig found: $KUBECONFIG and $HOME are not set"));
            }
            file = fs::path(home) / ".kube" / "config";
            if (!fs::exists(file, ec)) {
                return std::unexpected("no kubeconfig found: " + file.string() +
                                       " does not exist and $KUBECONFIG is not set");
            }
        }
    } else if (!fs::exists(file, ec)) {
        return std::unexpected("kubeconfig " + file.string() + ": no such file");
    }
    auto text = read_small_file(file);
    if (!text) {
        return std::unexpected("kubeconfig " + file.string() + ": " + text.error());
    }
    return parse_kubeconfig(file, *text, context);
}

} // namespace metalsync
