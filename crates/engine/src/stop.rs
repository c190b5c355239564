//! Stop strings over a token stream: text that might be the start of a stop string is
//! held back until it is known not to be one, and a matched stop string is dropped.

/// What a chunk of text turned into after stop-string filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Text safe to emit now (possibly empty); generation continues.
    Emit(String),
    /// A stop string matched: emit this text (what preceded the match) and stop.
    Stop(String),
}

/// Incremental stop-string matcher for one sequence.
#[derive(Debug, Default)]
pub(crate) struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// A filter for these stop strings (empty strings are ignored).
    pub(crate) fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    /// Feeds the next piece of generated text.
    pub(crate) fn push(&mut self, text: &str) -> Filtered {
        if self.stops.is_empty() {
            return Filtered::Emit(text.to_owned());
        }
        self.held.push_str(text);
        // Only `held` needs searching: everything emitted earlier was checked not to
        // start any stop string, so no match can straddle the boundary.
        let first_match = self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min();
        if let Some(at) = first_match {
            self.held.truncate(at);
            return Filtered::Stop(std::mem::take(&mut self.held));
        }
        let keep = self.partial_match_len();
        let emit_to = self.held.len() - keep;
        let rest = self.held.split_off(emit_to);
        Filtered::Emit(std::mem::replace(&mut self.held, rest))
    }

    /// Ends the stream without a match: releases whatever was held back.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string.
    fn partial_match_len(&self) -> usize {
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let max = self.held.len().min(longest_stop.saturating_sub(1));
        (1..=max)
            .rev()
            .filter(|&k| self.held.is_char_boundary(self.held.len() - k))
            .find(|&k| {
                let suffix = &self.held[self.held.len() - k..];
                self.stops.iter().any(|stop| stop.starts_with(suffix))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut filter = StopFilter::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match filter.push(piece) {
                Filtered::Emit(text) => out.push_str(&text),
                Filtered::Stop(text) => {
                    out.push_str(&text);
                    return (out, true);
                }
            }
        }
        out.push_str(&filter.finish());
        (out, false)
    }

    #[test]
    fn no_stops_passes_everything_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_within_one_piece_drops_it_and_the_rest() {
        assert_eq!(run(&["END"], &["abcENDdef"]), ("abc".into(), true));
    }

    #[test]
    fn stop_split_across_pieces_is_never_emitted_in_part() {
        let stops = vec!["</s>".to_string()];
        let mut filter = StopFilter::new(&stops);
        assert_eq!(filter.push("hello <"), Filtered::Emit("hello ".into()));
        assert_eq!(filter.push("/"), Filtered::Emit(String::new()));
        assert_eq!(filter.push("s> tail"), Filtered::Stop(String::new()));
    }

    #[test]
    fn false_start_is_released_once_it_diverges() {
        let stops = vec!["STOP".to_string()];
        let mut filter = StopFilter::new(&stops);
        assert_eq!(filter.push("ST"), Filtered::Emit(String::new()));
        assert_eq!(filter.push("ar"), Filtered::Emit("STar".into()));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        assert_eq!(run(&["STOP"], &["abc", "ST"]), ("abcST".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["world", "lo w"], &["hello world"]), ("hel".into(), true));
    }

    #[test]
    fn overlapping_prefix_keeps_the_longest_candidate() {
        // "aab": after "aa" both "a" and "aa" could start "aab"; the longer must be held.
        assert_eq!(run(&["aab"], &["xa", "a", "b"]), ("x".into(), true));
        assert_eq!(run(&["aab"], &["xa", "a", "c"]), ("xaac".into(), false));
    }

    #[test]
    fn multibyte_text_is_split_only_on_char_boundaries() {
        assert_eq!(run(&["é!"], &["caf", "é", "?"]), ("café?".into(), false));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
    }
}
