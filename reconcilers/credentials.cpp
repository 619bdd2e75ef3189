#include "reconcilers/credentials.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>

#include <yaml-cpp/yaml.h>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/sha256.hpp"

namespace metalsync {

namespace {

constexpr std::size_t k_max_credentials_size = 64 * 1024;
constexpr std::size_t k_hmac_key_size = 32;

std::string mode_text(mode_t mode)
{
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Closes the descriptor on every path out.
struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd()
    {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

// Reads a whole private file: a regular file, not readable by group or others.
std::expected<std::string, std::string> read_private_file(const std::filesystem::path& path, std::size_t max_size,
                                                          const std::string& what)
{
    Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (file.fd < 0) {
        int err = errno;
        return std::unexpected(what + " " + path.string() + ": " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) {
        int err = errno;
        return std::unexpected(what + " " + path.string() + ": " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        return std::unexpected(what + " " + path.string() + " is not a regular file");
    }
    if ((st.st_mode & 077) != 0) {
        return std::unexpected(what + " " + path.string() + " is readable by group or others (mode " +
                               mode_text(st.st_mode) + "); chmod 600 it");
    }
    if (static_cast<std::size_t>(st.st_size) > max_size) {
        return std::unexpected(what + " " + path.string() + " is larger than " + std::to_string(max_size) + " bytes");
    }
    std::string content;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(file.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int err = errno;
            return std::unexpected(what + " " + path.string() + ": " + std::strerror(err));
        }
        if (n == 0) {
            break;
        }
        content.append(buf, static_cast<std::size_t>(n));
        if (content.size() > max_size) {
            return std::unexpected(what + " " + path.string() + " is larger than " + std::to_string(max_size) +
                                   " bytes");
        }
    }
    return content;
}

std::expected<std::string, std::string> string_key(const YAML::Node& doc, const char* key, const std::string& file)
{
    const auto value = doc[key];
    if (!value.IsDefined() || value.IsNull()) {
        return std::unexpected("credentials file " + file + " has no `" + key + "`");
    }
    if (!value.IsScalar()) {
        return std::unexpected("credentials file " + file + ": `" + key + "` is not a string");
    }
    return value.Scalar();
}

} // namespace

bool is_credentials_name(const std::string& name)
{
    static const std::regex k_name("[A-Za-z0-9_][A-Za-z0-9._-]*");
    return name.size() <= 255 && std::regex_match(name, k_name);
}

CredentialsDirectory::CredentialsDirectory(std::filesystem::path directory, std::filesystem::path fallback)
    : m_directory(std::move(directory)), m_fallback(std::move(fallback))
{
}

std::expected<BmcCredentials, std::string> CredentialsDirectory::read(const std::string& name) const
{
    if (!is_credentials_name(name)) {
        // The name comes from Git, not from the file: safe to quote.
        return std::unexpected("credentials name '" + name +
                               "' is not a plain file name ([A-Za-z0-9_][A-Za-z0-9._-]*)");
    }
    auto path = m_directory / name;
    std::error_code ec;
    if (!m_fallback.empty() && m_fallback != m_directory && !std::filesystem::exists(path, ec) &&
        std::filesystem::exists(m_fallback / name, ec)) {
        path = m_fallback / name;
    }
    auto content = read_private_file(path, k_max_credentials_size, "credentials file");
    if (!content) {
        return std::unexpected(content.error());
    }
    YAML::Node doc;
    try {
        doc = YAML::Load(*content);
    } catch (const YAML::Exception& e) {
        // Only the position: yaml-cpp's messages may quote the content.
        return std::unexpected("credentials file " + path.string() + " is not valid YAML (line " +
                               std::to_string(e.mark.line + 1) + ", column " + std::to_string(e.mark.column + 1) + ")");
    }
    if (!doc.IsMap()) {
        return std::unexpected("credentials file " + path.string() +
                               " is not a YAML map of `username:` and `password:`");
    }
    BmcCredentials credentials;
    try {
        auto username = string_key(doc, "username", path.string());
        if (!username) {
            return std::unexpected(username.error());
        }
        auto password = string_key(doc, "password", path.string());
        if (!password) {
            return std::unexpected(password.error());
        }
        credentials.username = std::move(*username);
        credentials.password = std::move(*password);
        if (const auto suite = doc["cipherSuite"]; suite.IsDefined() && !suite.IsNull()) {
            int value = -1;
            if (!suite.IsScalar() || !YAML::convert<int>::decode(suite, value) || value < 0 || value > 17) {
                return std::unexpected("credentials file " + path.string() +
                                       ": `cipherSuite` is not an IPMI cipher suite number (0 to 17)");
            }
            credentials.cipher_suite = value;
        }
    } catch (const YAML::Exception& e) {
        return std::unexpected("credentials file " + path.string() + " could not be read (line " +
                               std::to_string(e.mark.line + 1) + ")");
    }
    remember_secret(credentials.password);
    return credentials;
}

std::string secret_hmac(const BmcCredentials& credentials, const std::string& key)
{
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    // The suite only when set, so that files without one keep their hash.
    std::string message = std::to_string(credentials.username.size()) + ":" + credentials.username +
                          std::to_string(credentials.password.size()) + ":" + credentials.password;
    if (credentials.cipher_suite) {
        message += "cipher:" + std::to_string(*credentials.cipher_suite);
    }
    return "hmac-sha256:" + to_hex(hmac_sha256(key, message));
}

std::expected<std::string, std::string> load_or_create_hmac_key(const std::filesystem::path& path)
{
    auto existing = read_private_file(path, k_hmac_key_size, "HMAC key file");
    if (existing) {
        if (existing->size() != k_hmac_key_size) {
            return std::unexpected("HMAC key file " + path.string() + " holds " + std::to_string(existing->size()) +
                                   " bytes, not " + std::to_string(k_hmac_key_size) +
                                   "; remove it to create a new key (every node's credentials are then written again)");
        }
        return *existing;
    }
    if (::access(path.c_str(), F_OK) == 0 || errno != ENOENT) {
        return std::unexpected(existing.error());
    }

    std::string key(k_hmac_key_size, '\0');
    {
        Fd random(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
        if (random.fd < 0) {
            int err = errno;
            return std::unexpected(std::string("/dev/urandom: ") + std::strerror(err));
        }
        std::size_t got = 0;
        while (got < key.size()) {
            ssize_t n = ::read(random.fd, key.data() + got, key.size() - got);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                return std::unexpected("/dev/urandom: short read");
            }
            got += static_cast<std::size_t>(n);
        }
    }
    // Written beside it, then linked into place: another process sees the
    // whole key or none, and the first link wins.
    const auto temp = path.string() + ".tmp." + std::to_string(::getpid());
    {
        Fd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (out.fd < 0) {
            int err = errno;
            return std::unexpected("HMAC key file " + temp + ": " + std::strerror(err));
        }
        if (::write(out.fd, key.data(), key.size()) != static_cast<ssize_t>(key.size()) || ::fsync(out.fd) != 0) {
            int err = errno;
            ::unlink(temp.c_str());
            return std::unexpected("HMAC key file " + temp + ": " + std::strerror(err));
        }
    }
    const int linked = ::link(temp.c_str(), path.c_str());
    const int link_errno = errno;
    ::unlink(temp.c_str());
    if (linked != 0) {
        if (link_errno == EEXIST) {
            return load_or_create_hmac_key(path);
        }
        return std::unexpected("HMAC key file " + path.string() + ": " + std::strerror(link_errno));
    }
    return key;
}

std::map<std::string, std::string>
current_secret_hashes(const DesiredState& desired, const CredentialsDirectory& credentials, const std::string& key)
{
    std::map<std::string, std::string> hashes;
    std::map<std::string, std::string> by_file; // one read per file per tick
    for (const auto& [name, spec] : desired.nodes) {
        const auto& file = spec.bmc.credentials;
        if (file.empty()) {
            continue;
        }
        auto it = by_file.find(file);
        if (it == by_file.end()) {
            auto read = credentials.read(file);
            it = by_file.emplace(file, read ? secret_hmac(*read, key) : std::string()).first;
        }
        hashes[name] = it->second;
    }
    return hashes;
}

CredentialKeys credential_keys(const std::string& driver)
{
    if (driver == "ipmi" || driver == "fake-hardware") {
        return {"ipmi_username", "ipmi_password", "ipmi_cipher_suite"};
    }
    if (driver == "redfish" || driver == "idrac") {
        return {"redfish_username", "redfish_password"};
    }
    if (driver == "ilo" || driver == "ilo5") {
        return {"ilo_username", "ilo_password"};
    }
    if (driver == "irmc") {
        return {"irmc_username", "irmc_password"};
    }
    return {};
}

} // namespace metalsync
