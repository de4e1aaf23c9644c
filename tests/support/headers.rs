//! Case-insensitive lookups over `(lowercased name, value)` lists, shared by the client's
//! responses and the upstream's recorded requests.

/// First value of header `name`.
pub fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

/// Every value of header `name`, in received order.
pub fn all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}
