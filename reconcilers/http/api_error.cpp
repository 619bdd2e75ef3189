#include "reconcilers/http/api_error.hpp"

namespace metalsync {

std::string ApiError::describe() const
{
    std::string out = operation.empty() ? std::string() : operation + ": ";
    if (http_status != 0) {
        out += "HTTP " + std::to_string(http_status) + ": ";
    }
    return out + message;
}

} // namespace metalsync
