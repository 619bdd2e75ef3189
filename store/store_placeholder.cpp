// The store is being written; this keeps the library non-empty meanwhile.
namespace metalsync::store_detail { int placeholder() { return 0; } }
