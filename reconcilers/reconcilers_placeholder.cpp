namespace metalsync::reconcilers_detail { int placeholder() { return 0; } }
