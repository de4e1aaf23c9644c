//! Attack inputs shared by the suites that send them over HTTP/1.1 and over HTTP/2.

/// Spellings of a path that try to reach `/admin` (which has no route) through the `/public`
/// route, and the status the gateway answers each with. None may reach the upstream.
pub const PATH_ATTACKS: &[(&str, u16)] = &[
    ("/public/../admin", 404),
    ("/public/%2e%2e/admin", 404),
    ("/public/%2E%2E/admin", 404),
    ("/public/.%2e/admin", 404),
    ("/public/%2e./admin", 404),
    ("//admin", 404),
    ("///admin//", 404),
    ("/public/./../admin", 404),
    ("/ADMIN", 404),
    ("/publicx", 404),
    ("/public/..%2fadmin", 400),
    ("/public/..%2Fadmin", 400),
    ("/public%2f..%2fadmin", 400),
    ("/public/%2e%2e%2fadmin", 400),
    ("/public/..%5cadmin", 400),
    ("/public/..%5Cadmin", 400),
    ("/public/..;/admin", 400),
    ("/public;x/admin", 400),
    ("/public/x;jsessionid=1", 400),
    ("/public/%00/admin", 400),
    ("/public/%0d%0aX-Injected:1", 400),
    ("/public/%zz", 400),
    ("/public/%4", 400),
    ("/../admin", 400),
    ("/public/../../admin", 400),
    ("/%2e%2e/admin", 400),
];
