//! The character rules of free-text input: what no field may carry, and the stricter rule
//! for names shown on one line. The HTTP layer screens every request with `is_forbidden`;
//! use cases check names with `single_line`.

use crate::error::ServiceError;

/// Characters refused in every text input.
pub fn is_forbidden(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Zero-width characters, direction marks and the byte-order mark, refused in names on
/// top of `is_forbidden`: they make two names that look alike differ. The zero-width
/// joiner (U+200D) is allowed: emoji sequences need it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200e}' | '\u{200f}' | '\u{2060}' | '\u{feff}'
    )
}

pub fn refusal(field: &str, c: char) -> ServiceError {
    ServiceError::bad(format!(
        "{field} contains a control, invisible or direction-override character (U+{:04X}); remove it",
        c as u32
    ))
}

/// For names and subjects shown on one line (API key names, display names, ticket
/// subjects, report names): no line breaks or tabs, no zero-width characters.
pub fn single_line(field: &str, value: &str) -> Result<(), ServiceError> {
    match value
        .chars()
        .find(|c| is_forbidden(*c) || is_invisible(*c) || matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(refusal(field, c)),
        None => Ok(()),
    }
}
