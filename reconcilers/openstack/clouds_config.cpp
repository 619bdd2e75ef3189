#include "reconcilers/openstack/clouds_config.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace metalsync {
namespace {

std::string scalar(const YAML::Node& node, const std::string& key)
{
    if (!node || !node.IsMap()) {
        return {};
    }
    const auto value = node[key];
    return value && value.IsScalar() ? value.as<std::string>() : std::string();
}

bool is_false(const YAML::Node& node)
{
    if (!node || !node.IsScalar()) {
        return false;
    }
    const auto v = node.as<std::string>();
    return v == "false" || v == "False" || v == "FALSE" || v == "no" || v == "0";
}

} // namespace

std::vector<std::filesystem::path> clouds_yaml_candidates(const std::optional<std::filesystem::path>& explicit_path,
                                                          const std::filesystem::path& cwd,
                                                          const std::filesystem::path& home)
{
    std::vector<std::filesystem::path> out;
    if (explicit_path && !explicit_path->empty()) {
        out.push_back(*explicit_path);
    }
    out.push_back(cwd / "clouds.yaml");
    if (!home.empty()) {
        out.push_back(home / ".config" / "openstack" / "clouds.yaml");
    }
    out.emplace_back("/etc/openstack/clouds.yaml");
    return out;
}

std::expected<CloudConfig, std::string> load_cloud_config(const std::optional<std::filesystem::path>& explicit_path,
                                                          const std::string& cloud_name)
{
    std::filesystem::path file;
    if (explicit_path && !explicit_path->empty()) {
        if (!std::filesystem::exists(*explicit_path)) {
            return std::unexpected("clouds.yaml " + explicit_path->string() + ": no such file");
        }
        file = *explicit_path;
    } else {
        std::error_code ec;
        const char* home = std::getenv("HOME");
        for (const auto& candidate :
             clouds_yaml_candidates(std::nullopt, std::filesystem::current_path(ec), home != nullptr ? home : "")) {
            if (std::filesystem::exists(candidate, ec)) {
                file = candidate;
                break;
            }
        }
        if (file.empty()) {
            return std::unexpected(std::string("no clouds.yaml found (tried ./clouds.yaml, "
                                               "~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)"));
        }
    }
    std::ifstream in(file);
    if (!in) {
        return std::unexpected("clouds.yaml " + file.string() + ": cannot be read");
    }
    std::stringstream text;
    text << in.rdbuf();
    return parse_cloud_config(text.str(), cloud_name, file);
}

std::expected<CloudConfig, std::string> parse_cloud_config(const std::string& yaml_text, const std::string& cloud_name,
                                                           const std::filesystem::path& file)
{
    const std::string where = "clouds.yaml " + file.string();
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        // yaml-cpp's message has a position and a reason, never the document.
        return std::unexpected(where + ": not valid YAML: " + e.msg);
    }
    const auto clouds = root["clouds"];
    if (!clouds || !clouds.IsMap() || clouds.size() == 0) {
        return std::unexpected(where + ": missing key clouds");
    }
    std::string name = cloud_name;
    if (name.empty()) {
        if (const char* env = std::getenv("OS_CLOUD"); env != nullptr && *env != '\0') {
            name = env;
        }
    }
    if (name.empty()) {
        if (clouds.size() != 1) {
            std::string names;
            for (const auto& entry : clouds) {
                names += (names.empty() ? "" : ", ") + entry.first.as<std::string>();
            }
            return std::unexpected(where + ": several clouds (" + names + "); name one or set OS_CLOUD");
        }
        name = clouds.begin()->first.as<std::string>();
    }
    const auto cloud = clouds[name];
    if (!cloud || !cloud.IsMap()) {
        return std::unexpected(where + ": no cloud named '" + name + "'");
    }
    const std::string prefix = where + ": cloud '" + name + "': ";

    CloudConfig config;
    config.name = name;
    config.file = file;
    const auto auth = cloud["auth"];
    auto auth_type = scalar(cloud, "auth_type");
    if (auth_type.empty()) {
        auth_type = "password";  // the OpenStack SDK's default
    }

    config.tls.ca_file = scalar(cloud, "cacert");
    config.tls.client_cert = scalar(cloud, "cert");
    config.tls.client_key = scalar(cloud, "key");
    config.tls.insecure = is_false(cloud["verify"]);

    // Bifrost writes baremetal_endpoint_override; the SDK also knows
    // auth.endpoint (auth_type none) and a plain endpoint.
    config.endpoint = scalar(cloud, "baremetal_endpoint_override");
    if (config.endpoint.empty()) {
        config.endpoint = scalar(auth, "endpoint");
    }
    if (config.endpoint.empty()) {
        config.endpoint = scalar(cloud, "endpoint");
    }

    auto require = [&](const YAML::Node& node, const std::string& section, const std::string& key,
                       std::string& into) -> std::optional<std::string> {
        into = scalar(node, key);
        if (into.empty()) {
            return prefix + "missing key " + section + key;
        }
        return std::nullopt;
    };

    if (auth_type == "none" || auth_type == "noauth") {
        config.auth_type = CloudConfig::AuthType::none;
        if (config.endpoint.empty()) {
            return std::unexpected(prefix + "missing key auth.endpoint (or baremetal_endpoint_override) for auth_type none");
        }
    } else if (auth_type == "http_basic") {
        config.auth_type = CloudConfig::AuthType::http_basic;
        if (config.endpoint.empty()) {
            return std::unexpected(prefix + "missing key auth.endpoint (or baremetal_endpoint_override) for auth_type http_basic");
        }
        if (auto e = require(auth, "auth.", "username", config.username)) {
            return std::unexpected(*e);
        }
        if (auto e = require(auth, "auth.", "password", config.password)) {
            return std::unexpected(*e);
        }
    } else if (auth_type == "password" || auth_type == "v3password" || auth_type == "v3applicationcredential" ||
               auth_type == "applicationcredential") {
        auto& k = config.keystone;
        if (auto e = require(auth, "auth.", "auth_url", k.auth_url)) {
            return std::unexpected(*e);
        }
        if (auth_type == "password" || auth_type == "v3password") {
            config.auth_type = CloudConfig::AuthType::password;
            k.method = KeystoneCredentials::Method::password;
            if (auto e = require(auth, "auth.", "username", k.username)) {
                return std::unexpected(*e);
            }
            if (auto e = require(auth, "auth.", "password", k.password)) {
                return std::unexpected(*e);
            }
            k.project_name = scalar(auth, "project_name");
            if (auto v = scalar(auth, "user_domain_name"); !v.empty()) {
                k.user_domain_name = v;
            }
            if (auto v = scalar(auth, "project_domain_name"); !v.empty()) {
                k.project_domain_name = v;
            }
        } else {
            config.auth_type = CloudConfig::AuthType::application_credential;
            k.method = KeystoneCredentials::Method::application_credential;
            if (auto e = require(auth, "auth.", "application_credential_id", k.application_credential_id)) {
                return std::unexpected(*e);
            }
            if (auto e = require(auth, "auth.", "application_credential_secret", k.application_credential_secret)) {
                return std::unexpected(*e);
            }
        }
        if (auto v = scalar(cloud, "baremetal_interface"); !v.empty()) {
            k.interface = v;
        } else if (auto i = scalar(cloud, "interface"); !i.empty()) {
            k.interface = i;
        }
        if (k.interface == "publicURL") {
            k.interface = "public";
        } else if (k.interface == "internalURL") {
            k.interface = "internal";
        } else if (k.interface == "adminURL") {
            k.interface = "admin";
        }
        k.region_name = scalar(cloud, "region_name");
    } else {
        return std::unexpected(prefix + "unsupported auth_type '" + auth_type +
                               "' (supported: none, http_basic, password, v3applicationcredential)");
    }
    return config;
}

} // namespace metalsync
