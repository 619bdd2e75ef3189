#pragma once

// OpenStack clouds.yaml, the way the baremetal CLI and Bifrost use it.
//
// Search order: the explicit path, ./clouds.yaml,
// ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml. The cloud is
// the one named, else $OS_CLOUD, else the only one in the file.
//
// auth_type: none (endpoint from auth.endpoint, endpoint or
// baremetal_endpoint_override, as Bifrost writes them), http_basic,
// password (Keystone v3) and v3applicationcredential. TLS: cacert, cert, key,
// verify: false.

#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "reconcilers/http/http_client.hpp"
#include "reconcilers/openstack/keystone.hpp"

namespace metalsync {

struct CloudConfig {
    enum class AuthType { none, http_basic, password, application_credential };

    std::string name;
    std::filesystem::path file;
    AuthType auth_type = AuthType::none;
    // none/http_basic: the baremetal endpoint; Keystone: an override of the
    // catalog's endpoint, or empty.
    std::string endpoint;
    std::string username;  // http_basic
    std::string password;  // http_basic
    KeystoneCredentials keystone;  // password, application_credential
    TlsOptions tls;
};

// The files tried, in order, for an explicit path (may be empty), the current
// directory and the home directory (may be empty).
std::vector<std::filesystem::path> clouds_yaml_candidates(const std::optional<std::filesystem::path>& explicit_path,
                                                          const std::filesystem::path& cwd,
                                                          const std::filesystem::path& home);

// Finds the file (the explicit path must exist when given), and reads the
// cloud named `cloud_name`, or $OS_CLOUD when it is empty. Errors name the
// file and the missing key, never a secret.
std::expected<CloudConfig, std::string> load_cloud_config(const std::optional<std::filesystem::path>& explicit_path,
                                                          const std::string& cloud_name = {});

// Parses clouds.yaml text; `file` is used in messages only. `cloud_name`
// empty: $OS_CLOUD, else the only cloud in the file.
std::expected<CloudConfig, std::string> parse_cloud_config(const std::string& yaml_text, const std::string& cloud_name,
                                                           const std::filesystem::path& file);

} // namespace metalsync
