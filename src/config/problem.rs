//! A configuration problem located in its file, so `dpsd check` can list them all and an
//! operator can jump straight to the line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the configuration: which file, which line when known, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A problem on the line of `text` where `needle` first appears (or without a line).
    pub fn near(file: &Path, text: &str, needle: &str, message: impl Into<String>) -> Self {
        Problem::new(file, line_of(text, needle), message)
    }

    /// The name of the worker or job whose file this is about (the file's stem).
    pub fn name(&self) -> Option<String> {
        self.file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
    }

    /// serde_yaml already knows the line; move it out of the message into `line`.
    pub fn from_yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let line = err.location().map(|l| l.line());
        let text = err.to_string();
        let message = match text.rfind(" at line ") {
            Some(at) if line.is_some() => text[..at].to_string(),
            _ => text,
        };
        Problem::new(file, line, message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in one pass, so that one run of `dpsd check` shows all of them.
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found wrong.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Problems(vec![problem])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// 1-based number of the first line containing `needle`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_keep_their_line_out_of_the_message() {
        let err = serde_yaml::from_str::<Vec<u32>>("- 1\n- x\n").unwrap_err();
        let p = Problem::from_yaml(Path::new("w.yaml"), &err);
        assert_eq!(p.line, Some(2));
        assert!(!p.message.contains("at line"), "{}", p.message);
        assert!(p.to_string().starts_with("w.yaml:2: "), "{p}");
    }

    #[test]
    fn line_of_finds_the_first_match() {
        assert_eq!(line_of("a: 1\nb: 2\nb: 3", "b:"), Some(2));
        assert_eq!(line_of("a: 1", "z"), None);
    }
}
