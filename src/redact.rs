//! Keeps secrets out of logs and output: passwords inside URLs become `***`.

/// Replaces the password of every `scheme://user:password@host` in `text` with `***`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact_urls("connect amqp://guest:s3cret@host:5672/%2f failed"),
            "connect amqp://guest:***@host:5672/%2f failed"
        );
        assert_eq!(
            redact_urls("a mongodb://u:p@h1,h2/db and http://x/y"),
            "a mongodb://u:***@h1,h2/db and http://x/y"
        );
        assert_eq!(redact_urls("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_urls("no urls"), "no urls");
    }
}
