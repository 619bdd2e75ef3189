// The child side of the Git network steps: started as `<exe> __git-worker`,
// reads one JSON request on stdin, talks to the remote with libgit2 and writes
// JSON lines on stdout (see git_worker_process.hpp for the protocol). The
// parent kills this process at its deadline, so nothing here needs a timeout.

#include "sources/git_worker.hpp"

#include "sources/git_known_hosts.hpp"
#include "sources/git_libgit2.hpp"
#include "sources/git_remote_url.hpp"

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace metalsync {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* k_default_ca_file = "/etc/ssl/certs/ca-certificates.crt";
constexpr const char* k_tip_ref = "refs/metalsync/tip";
constexpr const char* k_fetch_ref = "refs/metalsync/fetched";

struct WorkerFailure {
    std::string message;
};

// Everything the libgit2 callbacks need; the token lives only here.
struct Session {
    std::string url;
    std::string url_label; // redacted
    RemoteEndpoint endpoint;
    std::string username;
    std::string token;
    std::string token_file;
    std::string ssh_key_file;
    std::string known_hosts_file;
    std::string ca_file;
    int userpass_attempts = 0;
    int ssh_key_attempts = 0;
};

void emit(const json& line)
{
    std::cout << line.dump() << '\n' << std::flush;
}

std::string scrub(std::string text, const std::string& secret)
{
    if (secret.empty()) {
        return text;
    }
    for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos)) {
        text.replace(pos, secret.size(), "***");
    }
    return text;
}

std::string read_text_file(const std::string& path, const std::string& what)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw WorkerFailure{"cannot read " + what + " " + path};
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int credentials_cb(git_credential** out, const char* /*url*/, const char* username_from_url, unsigned int allowed,
                   void* payload)
{
    auto& s = *static_cast<Session*>(payload);
    const std::string user =
        username_from_url != nullptr && username_from_url[0] != '\0' ? username_from_url : s.username;
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) != 0 && !s.ssh_key_file.empty()) {
        if (s.ssh_key_attempts++ > 0) {
            git_error_set_str(GIT_ERROR_SSH, ("ssh key " + s.ssh_key_file + " was refused for user " + user).c_str());
            return GIT_EAUTH;
        }
        return git_credential_ssh_key_new(out, user.c_str(), nullptr, s.ssh_key_file.c_str(), nullptr);
    }
    if ((allowed & GIT_CREDENTIAL_USERNAME) != 0) {
        return git_credential_username_new(out, user.c_str());
    }
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0 && !s.token_file.empty()) {
        if (s.userpass_attempts++ > 0) {
            git_error_set_str(GIT_ERROR_HTTP,
                              ("authentication failed: the token from " + s.token_file + " was refused for user " + user)
                                  .c_str());
            return GIT_EAUTH;
        }
        return git_credential_userpass_plaintext_new(out, user.c_str(), s.token.c_str());
    }
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0 && !url_password(s.url).empty()) {
        // libgit2 tried the URL's user:token first and asks again: refused.
        git_error_set_str(GIT_ERROR_HTTP,
                          ("authentication failed: the token in the URL was refused for user " + user).c_str());
        return GIT_EAUTH;
    }
    std::string need = (allowed & GIT_CREDENTIAL_SSH_KEY) != 0 ? "an ssh key (ssh_key_file)"
                       : (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0 ? "a token (token_file)"
                                                                             : "credentials of a kind not supported";
    git_error_set_str(GIT_ERROR_CALLBACK, ("the remote asks for " + need + ", none is configured").c_str());
    return GIT_EAUTH;
}

// mbedTLS 2.28 (libgit2's TLS on Debian 12) matches the host only against a
// certificate's CN and dNSName entries, never an iPAddress entry: a server
// certificate that names its IP address the standard way is refused as a name
// mismatch (git and curl accept it). For an IP-literal host we redo that one
// check: the certificate must pass every other check against the configured
// CA bundle (chain, validity, profile; by itself, so a server that needs an
// intermediate the bundle lacks is still refused), be usable by a TLS server,
// and list the address among its iPAddress entries.
bool ip_address_certificate_ok(const git_cert_x509& cert, const std::string& host, const std::string& ca_file)
{
    unsigned char address[16];
    std::size_t address_len = 0;
    if (::inet_pton(AF_INET, host.c_str(), address) == 1) {
        address_len = 4;
    } else if (::inet_pton(AF_INET6, host.c_str(), address) == 1) {
        address_len = 16;
    } else {
        return false;
    }
    struct Certificates {
        mbedtls_x509_crt leaf;
        mbedtls_x509_crt trusted;
        Certificates()
        {
            mbedtls_x509_crt_init(&leaf);
            mbedtls_x509_crt_init(&trusted);
        }
        ~Certificates()
        {
            mbedtls_x509_crt_free(&leaf);
            mbedtls_x509_crt_free(&trusted);
        }
        Certificates(const Certificates&) = delete;
        Certificates& operator=(const Certificates&) = delete;
    } c;
    if (mbedtls_x509_crt_parse_der(&c.leaf, static_cast<const unsigned char*>(cert.data), cert.len) != 0 ||
        mbedtls_x509_crt_parse_file(&c.trusted, ca_file.c_str()) < 0) { // > 0: some bundle entries skipped
        return false;
    }
    std::uint32_t flags = 0;
    if (mbedtls_x509_crt_verify(&c.leaf, &c.trusted, nullptr, nullptr, &flags, nullptr, nullptr) != 0 || flags != 0) {
        return false;
    }
    if (mbedtls_x509_crt_check_extended_key_usage(&c.leaf, MBEDTLS_OID_SERVER_AUTH,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0 ||
        (mbedtls_x509_crt_check_key_usage(&c.leaf, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) != 0 &&
         mbedtls_x509_crt_check_key_usage(&c.leaf, MBEDTLS_X509_KU_KEY_ENCIPHERMENT) != 0)) {
        return false;
    }
    constexpr int k_ip_address_tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7; // GeneralName iPAddress [7]
    for (const mbedtls_x509_sequence* san = &c.leaf.subject_alt_names; san != nullptr && san->buf.p != nullptr;
         san = san->next) {
        if (san->buf.tag == k_ip_address_tag && san->buf.len == address_len &&
            std::memcmp(san->buf.p, address, address_len) == 0) {
            return true;
        }
    }
    return false;
}

int certificate_cb(git_cert* cert, int valid, const char* host, void* payload)
{
    auto& s = *static_cast<Session*>(payload);
    if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2) {
        const auto* key = reinterpret_cast<const git_cert_hostkey*>(cert);
        if ((key->type & GIT_CERT_SSH_RAW) == 0 || key->hostkey == nullptr) {
            git_error_set_str(GIT_ERROR_SSH, "libgit2 did not provide the raw ssh host key; refusing to connect");
            return GIT_ECERTIFICATE;
        }
        if (s.known_hosts_file.empty()) {
            git_error_set_str(GIT_ERROR_SSH, "no known_hosts_file configured for an ssh remote; refusing to connect");
            return GIT_ECERTIFICATE;
        }
        std::string text;
        try {
            text = read_text_file(s.known_hosts_file, "known_hosts file");
        } catch (const WorkerFailure& f) {
            git_error_set_str(GIT_ERROR_SSH, f.message.c_str());
            return GIT_ECERTIFICATE;
        }
        auto verdict = check_host_key(parse_known_hosts(text), s.endpoint.host, s.endpoint.port,
                                      std::string_view(key->hostkey, key->hostkey_len), s.known_hosts_file);
        if (!verdict) {
            git_error_set_str(GIT_ERROR_SSH, verdict.error().c_str());
            return GIT_ECERTIFICATE;
        }
        return 0;
    }
    if (valid == 0 && cert->cert_type == GIT_CERT_X509 && host != nullptr &&
        ip_address_certificate_ok(*reinterpret_cast<const git_cert_x509*>(cert), host, s.ca_file)) {
        return 0;
    }
    if (valid == 0) {
        // mbedTLS checked the chain against ca_file and the name against the host.
        git_error_set_str(GIT_ERROR_SSL, ("TLS certificate of " + std::string(host != nullptr ? host : "?") +
                                          " is not trusted (CA bundle " + s.ca_file + ")")
                                             .c_str());
        return GIT_ECERTIFICATE;
    }
    return 0;
}

git_remote_callbacks make_callbacks(Session& session)
{
    git_remote_callbacks callbacks;
    git_remote_init_callbacks(&callbacks, GIT_REMOTE_CALLBACKS_VERSION);
    callbacks.credentials = credentials_cb;
    callbacks.certificate_check = certificate_cb;
    callbacks.payload = &session;
    return callbacks;
}

void check(int rc, const std::string& what)
{
    if (rc < 0) {
        throw WorkerFailure{what + ": " + git::last_error_message(rc)};
    }
}

git::RepositoryPtr open_or_init(const fs::path& dir)
{
    git_repository* raw = nullptr;
    if (git_repository_open_bare(&raw, dir.c_str()) == 0) {
        return git::RepositoryPtr(raw);
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    check(git_repository_init(&raw, dir.c_str(), 1), "cannot create local clone " + dir.string());
    return git::RepositoryPtr(raw);
}

// Serialises workers on one clone; while held, any *.lock file under our refs
// was left by a worker killed at its deadline and is removed.
int lock_clone(const fs::path& dir)
{
    std::error_code ec;
    fs::create_directories(dir.parent_path(), ec);
    const fs::path lock_path = dir.parent_path() / (dir.filename().string() + ".lock");
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) {
        throw WorkerFailure{"cannot lock " + lock_path.string()};
    }
    const fs::path ours = dir / "refs" / "metalsync";
    if (fs::is_directory(ours, ec)) {
        for (const auto& entry : fs::recursive_directory_iterator(ours, ec)) {
            if (entry.path().extension() == ".lock") {
                fs::remove(entry.path(), ec);
            }
        }
    }
    fs::remove(dir / "packed-refs.lock", ec);
    return fd;
}

bool has_commit(git_repository* repo, const git_oid& oid)
{
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo, &oid) != 0) {
        return false;
    }
    git_commit_free(raw);
    return true;
}

git_oid peel_to_commit(git_repository* repo, const git_oid& oid, const std::string& what)
{
    git_object* raw = nullptr;
    check(git_object_lookup(&raw, repo, &oid, GIT_OBJECT_ANY), what + " " + git::oid_hex(oid) + " not found locally");
    git::ObjectPtr object(raw);
    git_object* peeled = nullptr;
    check(git_object_peel(&peeled, object.get(), GIT_OBJECT_COMMIT), what + " does not point to a commit");
    git::ObjectPtr commit(peeled);
    return *git_object_id(commit.get());
}

void set_tip(git_repository* repo, const git_oid& commit)
{
    git_reference* raw = nullptr;
    check(git_reference_create(&raw, repo, k_tip_ref, &commit, 1, "metalsync poll"), "cannot update " +
                                                                                           std::string(k_tip_ref));
    git_reference_free(raw);
}

void fetch(git_remote* remote, const std::vector<std::string>& specs, Session& session, const std::string& label)
{
    std::vector<char*> ptrs;
    for (const auto& s : specs) {
        ptrs.push_back(const_cast<char*>(s.c_str()));
    }
    git_strarray refspecs{ptrs.data(), ptrs.size()};
    git_fetch_options options;
    git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
    options.callbacks = make_callbacks(session);
    options.proxy_opts.type = GIT_PROXY_AUTO;
    options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    options.prune = GIT_FETCH_NO_PRUNE;
    options.update_fetchhead = 0;
    check(git_remote_fetch(remote, &refspecs, &options, "metalsync fetch"), "fetch " + label);
}

json poll(const json& request)
{
    Session session;
    session.url = request.at("url").get<std::string>();
    session.url_label = redact_url(session.url);
    session.username = request.value("username", std::string("git"));
    session.token_file = request.value("token_file", std::string());
    session.ssh_key_file = request.value("ssh_key_file", std::string());
    session.known_hosts_file = request.value("known_hosts_file", std::string());
    session.ca_file = request.value("ca_file", std::string());
    if (session.ca_file.empty()) {
        session.ca_file = k_default_ca_file;
    }
    auto endpoint = parse_remote_url(session.url);
    if (!endpoint) {
        throw WorkerFailure{"unsupported remote URL"};
    }
    session.endpoint = *endpoint;
    if (!session.token_file.empty()) {
        session.token = read_text_file(session.token_file, "token file");
        while (!session.token.empty() && (session.token.back() == '\n' || session.token.back() == '\r')) {
            session.token.pop_back();
        }
    }

    git::ensure_initialised();
    if (session.endpoint.scheme == "https") {
        if (::access(session.ca_file.c_str(), R_OK) != 0) {
            throw WorkerFailure{"cannot read CA bundle " + session.ca_file};
        }
        check(git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, session.ca_file.c_str(), nullptr),
              "cannot use CA bundle " + session.ca_file);
    }

    const fs::path repo_dir = request.at("repo_dir").get<std::string>();
    const int lock_fd = lock_clone(repo_dir);
    (void)lock_fd; // released when the worker exits
    auto repo = open_or_init(repo_dir);

    const std::string kind = request.at("ref_kind").get<std::string>();
    const std::string name = request.at("ref").get<std::string>();
    const std::string last = request.value("last_commit", std::string());

    git_remote* raw_remote = nullptr;
    check(git_remote_create_anonymous(&raw_remote, repo.get(), session.url.c_str()), "invalid remote URL");
    git::RemotePtr remote(raw_remote);

    git_remote_callbacks callbacks = make_callbacks(session);
    git_proxy_options proxy;
    git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
    proxy.type = GIT_PROXY_AUTO;
    check(git_remote_connect(remote.get(), GIT_DIRECTION_FETCH, &callbacks, &proxy, nullptr), "connect");

    if (kind == "commit") {
        git_oid wanted;
        if (!git::parse_oid(name, wanted)) {
            throw WorkerFailure{"pinned commit '" + name + "' is not a full 40-hex id"};
        }
        emit({{"event", "listed"}});
        fetch(remote.get(), {"+refs/heads/*:refs/metalsync/heads/*", "+refs/tags/*:refs/metalsync/tags/*"}, session,
              "branches and tags");
        if (!has_commit(repo.get(), wanted)) {
            throw WorkerFailure{"commit " + name + " not found in any branch or tag of the remote"};
        }
        set_tip(repo.get(), wanted);
        return {{"event", "done"}, {"commit", name}, {"fetched", true}};
    }

    const std::string ref = (kind == "tag" ? "refs/tags/" : "refs/heads/") + name;
    const git_remote_head** heads = nullptr;
    std::size_t count = 0;
    check(git_remote_ls(&heads, &count, remote.get()), "list refs");
    const git_remote_head* direct = nullptr;
    const git_remote_head* peeled = nullptr;
    for (std::size_t i = 0; i < count; ++i) {
        if (ref == heads[i]->name) {
            direct = heads[i];
        } else if (ref + "^{}" == heads[i]->name) {
            peeled = heads[i];
        }
    }
    if (direct == nullptr) {
        throw WorkerFailure{kind + " '" + name + "' not found"};
    }
    const git_oid advertised = (peeled != nullptr ? peeled : direct)->oid;
    emit({{"event", "listed"}, {"tip", git::oid_hex(advertised)}});

    git_oid last_oid;
    if (git::parse_oid(last, last_oid) && git_oid_equal(&last_oid, &advertised) && has_commit(repo.get(), last_oid)) {
        set_tip(repo.get(), last_oid);
        return {{"event", "done"}, {"commit", git::oid_hex(advertised)}, {"fetched", false}};
    }

    fetch(remote.get(), {"+" + ref + ":" + k_fetch_ref}, session, kind + " '" + name + "'");
    // The fetched ref is the truth: over http the ref may have moved since listing.
    git_oid fetched_oid = direct->oid;
    git_reference* raw_ref = nullptr;
    if (git_reference_lookup(&raw_ref, repo.get(), k_fetch_ref) == 0) {
        git::ReferencePtr fetched_ref(raw_ref);
        if (const git_oid* target = git_reference_target(fetched_ref.get())) {
            fetched_oid = *target;
        }
    }
    const git_oid tip = peel_to_commit(repo.get(), fetched_oid, kind + " '" + name + "'");
    set_tip(repo.get(), tip);
    return {{"event", "done"}, {"commit", git::oid_hex(tip)}, {"fetched", true}};
}

} // namespace

std::optional<int> maybe_run_git_worker(int argc, char** argv)
{
    if (argc < 2 || std::string_view(argv[1]) != "__git-worker") {
        return std::nullopt;
    }
    std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    std::string url_label = "?";
    std::vector<std::string> secrets;
    try {
        const json request = json::parse(input);
        const std::string url = request.value("url", std::string());
        url_label = redact_url(url);
        secrets.push_back(url_password(url));
        const std::string token_file = request.value("token_file", std::string());
        if (!token_file.empty()) {
            // Only to scrub messages: the token must never leave this process.
            std::ifstream in(token_file, std::ios::binary);
            std::string token{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
                token.pop_back();
            }
            secrets.push_back(token);
        }
        if (request.value("op", std::string()) != "poll") {
            throw WorkerFailure{"unknown worker request"};
        }
        emit(poll(request));
        return 0;
    } catch (const WorkerFailure& failure) {
        std::string message = "git remote " + url_label + ": " + failure.message;
        for (const auto& secret : secrets) {
            message = scrub(message, secret);
        }
        emit({{"event", "error"}, {"message", message}});
    } catch (const std::exception& e) {
        std::string message = "git remote " + url_label + ": worker failed: " + e.what();
        for (const auto& secret : secrets) {
            message = scrub(message, secret);
        }
        emit({{"event", "error"}, {"message", message}});
    }
    return 0;
}

} // namespace metalsync
