#include "sources/git_libgit2.hpp"

#include <mutex>

namespace metalsync::git {

void ensure_initialised()
{
    static std::once_flag once;
    std::call_once(once, [] { git_libgit2_init(); });
}

std::string last_error_message(int code)
{
    const git_error* e = git_error_last();
    if (e != nullptr && e->message != nullptr && e->message[0] != '\0') {
        return e->message;
    }
    return "libgit2 error " + std::to_string(code);
}

bool parse_oid(const std::string& hex, git_oid& out)
{
    if (hex.size() != GIT_OID_HEXSZ) {
        return false;
    }
    for (char c : hex) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!ok) {
            return false;
        }
    }
    return git_oid_fromstr(&out, hex.c_str()) == 0;
}

std::string oid_hex(const git_oid& oid)
{
    char buf[GIT_OID_HEXSZ + 1];
    git_oid_tostr(buf, sizeof buf, &oid);
    return buf;
}

} // namespace metalsync::git
