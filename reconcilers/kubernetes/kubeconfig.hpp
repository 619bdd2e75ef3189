#pragma once

// A kubeconfig file, read the way kubectl reads it, for one context.
//
// File: the explicit path, else the first entry of $KUBECONFIG that exists
// (kubectl merges them all; metalsync reads one file), else ~/.kube/config. Context: the one named, else current-context.
// Supported: server; certificate-authority(-data); client-certificate(-data)
// and client-key(-data); token and tokenFile; insecure-skip-tls-verify;
// the context's namespace. An exec or auth-provider plugin is refused with a
// clear "not supported" error, and so are username/password, impersonation,
// tls-server-name and proxy-url. A *-data field next to its file field is an
// error, as in client-go. Errors name the file and the key; they never
// contain a token, a key or certificate data.

#include <expected>
#include <filesystem>
#include <string>

#include "reconcilers/http/http_client.hpp"

namespace metalsync {

struct KubeConnection {
    std::filesystem::path file;      // the kubeconfig read
    std::string context;             // the context used
    std::string server;              // e.g. https://10.0.0.1:6443, no trailing slash
    TlsOptions tls;                  // CA, client certificate and key (files or PEM data), insecure
    std::string bearer_token;        // a secret: never logged, never in an error
    std::filesystem::path token_file; // re-read on 401 when set (projected tokens rotate)
    std::string default_namespace = "default";  // the context's namespace, else "default"
};

// `path` empty: $KUBECONFIG, else ~/.kube/config. `context` empty: current-context.
std::expected<KubeConnection, std::string> load_kubeconfig(const std::filesystem::path& path,
                                                           const std::string& context = {});

// Parses kubeconfig text; `path_for_errors` names it in messages and resolves
// relative file references (they are relative to the kubeconfig's directory).
std::expected<KubeConnection, std::string> parse_kubeconfig(const std::filesystem::path& path_for_errors,
                                                            const std::string& content,
                                                            const std::string& context = {});

} // namespace metalsync
