//! Configuration problems: where (line:col and field path) and what, in plain words.

use std::fmt;

use super::yaml::Pos;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Option<Pos>,
    /// Field path such as `routes[3].upstream`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file, printed one per line as `file:line:col: path: message`.
#[derive(Debug, Clone, Default)]
pub struct Problems {
    pub file: String,
    pub items: Vec<Problem>,
}

impl Problems {
    pub fn new(file: &str) -> Self {
        Problems {
            file: file.to_string(),
            items: Vec::new(),
        }
    }

    pub fn add(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.items.push(Problem {
            pos: Some(pos),
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn add_unpositioned(&mut self, path: &str, message: impl Into<String>) {
        self.items.push(Problem {
            pos: None,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.items {
            match p.pos {
                Some(pos) => write!(f, "{}:{}: ", self.file, pos)?,
                None => write!(f, "{}: ", self.file)?,
            }
            if !p.path.is_empty() {
                write!(f, "{}: ", p.path)?;
            }
            writeln!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance; inputs are short field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("upstrem", &["upstream", "routes"]), Some("upstream"));
        assert_eq!(did_you_mean("retires", &["retries", "timeout"]), Some("retries"));
        assert_eq!(did_you_mean("zzz", &["retries", "timeout"]), None);
    }

    #[test]
    fn formats_file_line_col_path() {
        let mut p = Problems::new("a.yaml");
        p.add(Pos { line: 3, col: 5 }, "routes[0].upstream", "x");
        p.add_unpositioned("", "y");
        assert_eq!(p.to_string(), "a.yaml:3:5: routes[0].upstream: x\na.yaml: y\n");
    }
}
