#pragma once

// BMC credentials: small YAML files on the bastion, never in Git, SQLite, a
// log line or a socket reply.
//
//   /etc/metalsync/credentials/rack1-bmc   (mode 0600)
//   username: admin
//   password: changeme
//   cipherSuite: 3        # optional, IPMI only: written as ipmi_cipher_suite
//
// A node names its file with `spec.bmc.credentials: rack1-bmc`. What the
// store keeps instead of the password is secret_hmac(): an HMAC-SHA256 under a
// per-install random key, so a stolen database does not allow an offline
// guess of the password, and a changed password is noticed even though
// Ironic reads passwords back as "******".

#include <expected>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sources/desired_state.hpp"

namespace metalsync {

struct BmcCredentials {
    std::string username;
    std::string password;
    // The IPMI 2.0 cipher suite the BMC account is reached with (ipmitool -C).
    // It belongs with the account, not the node: a BMC's users are allowed
    // per privilege level to certain suites, and without the right one each
    // ipmitool call waits out a refused suite first (10 s against ipmi_sim).
    std::optional<int> cipher_suite = std::nullopt;
};

class CredentialsDirectory {
  public:
    // `fallback`: where a name missing from `directory` is looked for next
    // (under systemd, $CREDENTIALS_DIRECTORY first, then credentialsDir).
    explicit CredentialsDirectory(std::filesystem::path directory, std::filesystem::path fallback = {});

    [[nodiscard]] const std::filesystem::path& directory() const { return m_directory; }

    // Reads DIRECTORY/NAME. Refuses a NAME that is not a plain file name
    // ([A-Za-z0-9_][A-Za-z0-9._-]*), a file readable by group or others, a
    // file that is not a YAML map with string `username` and `password`
    // (and, optionally, an integer `cipherSuite` from 0 to 17).
    // The password is registered with remember_secret(), so redact() masks
    // it everywhere. Error messages name the file, never its content.
    [[nodiscard]] std::expected<BmcCredentials, std::string> read(const std::string& name) const;

  private:
    std::filesystem::path m_directory;
    std::filesystem::path m_fallback;
};

// True for a plain credentials file name ([A-Za-z0-9_][A-Za-z0-9._-]*).
[[nodiscard]] bool is_credentials_name(const std::string& name);

// "hmac-sha256:<64 hex>" of the username and password (and the cipher suite,
// when set) under `key`.
[[nodiscard]] std::string secret_hmac(const BmcCredentials& credentials, const std::string& key);

// The per-install HMAC key: 32 random bytes (from /dev/urandom) in `path`,
// created with mode 0600 on first use. Refuses a key file of the wrong size
// or readable by group or others. Safe against two processes creating it at
// once (the file appears whole or not at all).
[[nodiscard]] std::expected<std::string, std::string> load_or_create_hmac_key(const std::filesystem::path& path);

// The current secret_hmac() of every desired node's credentials file, by node
// name: the planner's PlanInput::secret_hashes. Empty for a node whose file
// cannot be read (the runner reports why when it needs the file).
[[nodiscard]] std::map<std::string, std::string>
current_secret_hashes(const DesiredState& desired, const CredentialsDirectory& credentials, const std::string& key);

// The driver_info keys a driver takes its BMC user name and password in
// ("ipmi_username"/"ipmi_password"/"ipmi_cipher_suite", "redfish_username"/..., ...); empty
// strings for a driver metalsync does not know credentials for.
struct CredentialKeys {
    std::string username;
    std::string password;
    std::string cipher_suite = {}; // empty: the driver takes no cipher suite
};
[[nodiscard]] CredentialKeys credential_keys(const std::string& driver);

} // namespace metalsync
