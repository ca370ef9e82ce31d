//! A scrape response's headers as the targets page shows them.

/// Header lines, names lowercased, in one text buffer: a scrape copies
/// the last response's headers into the target's status each time, and
/// with a string a header that copy allocated and freed two blocks a
/// header (`clone_from` on a pair of strings builds new ones). Copied
/// with `clone_from`, this reuses the buffers the status already holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    text: String,
    /// Where each header's name and value end in `text`.
    ends: Vec<(u32, u32)>,
}

impl ResponseHeaders {
    /// Adds a header, its name lowercased and its value with any invalid
    /// UTF-8 replaced. Ignored once the text would pass 4 GiB (a response
    /// head is capped far below).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let start = self.text.len();
        self.text
            .extend(name.chars().map(|c| c.to_ascii_lowercase()));
        let name_end = self.text.len();
        self.text.push_str(&String::from_utf8_lossy(value));
        match (u32::try_from(name_end), u32::try_from(self.text.len())) {
            (Ok(n), Ok(v)) => self.ends.push((n, v)),
            _ => self.text.truncate(start),
        }
    }

    /// The first `Content-Type` header's value (as Go's `Header.Get`), or
    /// "" when there is none.
    pub fn content_type(&self) -> &str {
        self.iter()
            .find(|&(name, _)| name == "content-type")
            .map_or("", |(_, value)| value)
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each header's (lowercased name, value), in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (n, v) = (name_end as usize, value_end as usize);
            let pair = (&self.text[start..n], &self.text[n..v]);
            start = v;
            pair
        })
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for ResponseHeaders {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(headers: I) -> Self {
        let mut list = ResponseHeaders::default();
        for (name, value) in headers {
            list.push(name, value.as_bytes());
        }
        list
    }
}

impl Clone for ResponseHeaders {
    fn clone(&self) -> Self {
        ResponseHeaders {
            text: self.text.clone(),
            ends: self.ends.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.text.clone_from(&source.text);
        self.ends.clone_from(&source.ends);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_their_order_lowercased_names_and_mended_values() {
        let mut h = ResponseHeaders::default();
        h.push("Content-Type", b"text/plain; version=0.0.4");
        h.push("X-Empty", b"");
        h.push("X-Bad", b"a\xffb");
        let got: Vec<_> = h.iter().collect();
        assert_eq!(
            got,
            [
                ("content-type", "text/plain; version=0.0.4"),
                ("x-empty", ""),
                ("x-bad", "a\u{FFFD}b"),
            ]
        );
        assert_eq!(h.len(), 3);
        assert_eq!(h.content_type(), "text/plain; version=0.0.4");
        h.push("content-type", b"application/openmetrics-text");
        assert_eq!(h.content_type(), "text/plain; version=0.0.4", "the first");
        h.clear();
        assert!(h.is_empty() && h.iter().next().is_none());
    }

    #[test]
    fn a_copy_into_a_larger_copy_keeps_its_buffers() {
        let mut big = ResponseHeaders::default();
        for i in 0..8 {
            big.push("Name", format!("value {i}").as_bytes());
        }
        let mut small = ResponseHeaders::default();
        small.push("Server", b"nginx");
        let mut status = big.clone();
        let (text, ends) = (status.text.as_ptr(), status.ends.as_ptr());
        status.clone_from(&small);
        assert_eq!(status, small);
        assert_eq!((status.text.as_ptr(), status.ends.as_ptr()), (text, ends));
    }
}
