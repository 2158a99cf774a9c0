//! Tokenizer for the `simple` expression language.
//!
//! The lexer is pulled one token at a time by the parser, so errors surface
//! in source order: `f(a % b)` reports the call before it ever sees the `%`.

use crate::error::Fault;

/// Token categories; the payload of literals lives in [`Token::literal`] so
/// that the kind stays `Copy` and can be inspected while peeking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ident,
    Int,
    Float,
    Str,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Colon,
    Plus,
    Minus,
    Star,
    Slash,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

/// Decoded value of a literal token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    None,
    /// Unsigned so that `-9223372036854775808` can still be folded by the parser.
    Int(u64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'src> {
    pub(crate) kind: Kind,
    /// Exact source text, used in error messages.
    pub(crate) text: &'src str,
    /// 1-based character column of the first character.
    pub(crate) column: usize,
    pub(crate) literal: Literal,
}

pub(crate) struct Lexer<'src> {
    src: &'src str,
    /// Byte offset of the next unread character (always on a char boundary).
    pos: usize,
    /// Character column of the next unread character.
    col: usize,
}

impl<'src> Lexer<'src> {
    pub(crate) fn new(src: &'src str) -> Self {
        Self {
            src,
            pos: 0,
            col: 1,
        }
    }

    fn rest(&self) -> &'src str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        self.col += 1;
        Some(c)
    }

    fn bump_if(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn bump_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
    }

    /// Whitespace (newlines included, unlike Python's eval mode, because
    /// expressions often come from folded YAML strings) and `#` comments.
    fn skip_trivia(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r' | '\x0c') => {
                    self.bump();
                }
                Some('#') => self.bump_while(|c| c != '\n'),
                _ => return,
            }
        }
    }

    pub(crate) fn next_token(&mut self) -> Result<Token<'src>, Fault> {
        self.skip_trivia();
        let start = self.pos;
        let column = self.col;
        let mut literal = Literal::None;
        let Some(c) = self.bump() else {
            return Ok(Token {
                kind: Kind::Eof,
                text: "",
                column,
                literal,
            });
        };
        let unsupported = |op: &str| {
            Err(Fault::new(
                column,
                format!("operator `{op}` is not supported"),
            ))
        };
        let kind = match c {
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            '[' => Kind::LBracket,
            ']' => Kind::RBracket,
            ',' => Kind::Comma,
            '+' => Kind::Plus,
            '-' => Kind::Minus,
            '.' if self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let (kind, lit) = self.number(start, column)?;
                literal = lit;
                kind
            }
            '.' => Kind::Dot,
            '0'..='9' => {
                let (kind, lit) = self.number(start, column)?;
                literal = lit;
                kind
            }
            '\'' | '"' => {
                literal = Literal::Str(self.string(c, column)?);
                Kind::Str
            }
            'a'..='z' | 'A'..='Z' | '_' => {
                self.bump_while(|c| c.is_ascii_alphanumeric() || c == '_');
                self.reject_string_prefix(start, column)?;
                Kind::Ident
            }
            '*' if self.bump_if('*') => return unsupported("**"),
            '*' => Kind::Star,
            '/' if self.bump_if('/') => return unsupported("//"),
            '/' => Kind::Slash,
            '=' if self.bump_if('=') => Kind::Eq,
            '=' => {
                return Err(Fault::new(
                    column,
                    "assignment `=` is not supported (use `==` to compare)",
                ));
            }
            '!' if self.bump_if('=') => Kind::Ne,
            '!' => return unsupported("!"),
            '<' if self.bump_if('=') => Kind::Le,
            '<' if self.bump_if('<') => return unsupported("<<"),
            '<' => Kind::Lt,
            '>' if self.bump_if('=') => Kind::Ge,
            '>' if self.bump_if('>') => return unsupported(">>"),
            '>' => Kind::Gt,
            ':' if self.bump_if('=') => {
                return Err(Fault::new(column, "assignment `:=` is not supported"));
            }
            ':' => Kind::Colon,
            '%' | '&' | '|' | '^' | '~' | '@' => return unsupported(&c.to_string()),
            '{' => {
                return Err(Fault::new(
                    column,
                    "dict and set literals are not supported",
                ));
            }
            other => {
                return Err(Fault::new(
                    column,
                    format!("unexpected character `{}`", other.escape_debug()),
                ));
            }
        };
        Ok(Token {
            kind,
            text: self.src.get(start..self.pos).unwrap_or(""),
            column,
            literal,
        })
    }

    /// Python string prefixes (`f'..'`, `r'..'`, `b'..'`) change meaning in
    /// ways this language does not model, so they are rejected by name.
    fn reject_string_prefix(&self, start: usize, column: usize) -> Result<(), Fault> {
        if !matches!(self.peek(), Some('\'' | '"')) {
            return Ok(());
        }
        let word = self.src.get(start..self.pos).unwrap_or("");
        let lower = word.to_ascii_lowercase();
        if !matches!(
            lower.as_str(),
            "r" | "u" | "b" | "f" | "br" | "rb" | "fr" | "rf"
        ) {
            return Ok(());
        }
        let message = if lower.contains('f') {
            "f-strings are not supported".to_owned()
        } else {
            format!("string prefix `{word}` is not supported")
        };
        Err(Fault::new(column, message))
    }

    /// Lexes a decimal number whose first character (a digit or `.`) has
    /// already been consumed.
    fn number(&mut self, start: usize, column: usize) -> Result<(Kind, Literal), Fault> {
        let first = self.src.get(start..).and_then(|s| s.chars().next());
        if first == Some('0') && matches!(self.peek(), Some('x' | 'X' | 'o' | 'O' | 'b' | 'B')) {
            return Err(Fault::new(
                column,
                "only decimal number literals are supported",
            ));
        }
        let mut is_float = first == Some('.');
        self.bump_while(|c| c.is_ascii_digit());
        if !is_float && self.bump_if('.') {
            is_float = true;
            self.bump_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let digit_at = if matches!(self.peek_nth(1), Some('+' | '-')) {
                2
            } else {
                1
            };
            if !self.peek_nth(digit_at).is_some_and(|c| c.is_ascii_digit()) {
                return Err(Fault::new(column, "invalid number literal"));
            }
            for _ in 0..digit_at {
                self.bump();
            }
            self.bump_while(|c| c.is_ascii_digit());
            is_float = true;
        }
        match self.peek() {
            Some('j' | 'J') => {
                return Err(Fault::new(
                    column,
                    "complex number literals are not supported",
                ));
            }
            Some('_') => {
                return Err(Fault::new(column, "digit separators `_` are not supported"));
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '.' => {
                return Err(Fault::new(column, "invalid number literal"));
            }
            _ => {}
        }
        let text = self.src.get(start..self.pos).unwrap_or("");
        if is_float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok((Kind::Float, Literal::Float(f))),
                Ok(_) => Err(Fault::new(column, "float literal out of range")),
                Err(_) => Err(Fault::new(column, "invalid number literal")),
            }
        } else if text.len() > 1 && text.starts_with('0') && text.bytes().any(|b| b != b'0') {
            Err(Fault::new(
                column,
                "leading zeros in integer literals are not permitted",
            ))
        } else {
            text.parse::<u64>()
                .map(|n| (Kind::Int, Literal::Int(n)))
                .map_err(|_| Fault::new(column, "integer literal too large"))
        }
    }

    /// Lexes a single-line string whose opening `quote` was consumed.
    fn string(&mut self, quote: char, column: usize) -> Result<String, Fault> {
        if self.peek() == Some(quote) && self.peek_nth(1) == Some(quote) {
            return Err(Fault::new(
                column,
                "triple-quoted strings are not supported",
            ));
        }
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n' | '\r') => return Err(Fault::new(column, "unterminated string")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => {
                    let escape_column = self.col - 1;
                    self.escape(&mut out, column, escape_column)?;
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// Decodes one escape sequence after its backslash, following Python's
    /// rules, including keeping the backslash of unknown escapes.
    fn escape(
        &mut self,
        out: &mut String,
        string_column: usize,
        column: usize,
    ) -> Result<(), Fault> {
        let decoded = match self.bump() {
            None => return Err(Fault::new(string_column, "unterminated string")),
            // A backslash before a newline continues the string on the next line.
            Some('\n') => return Ok(()),
            Some(c @ ('\\' | '\'' | '"')) => c,
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('a') => '\x07',
            Some('b') => '\x08',
            Some('f') => '\x0c',
            Some('v') => '\x0b',
            Some(d @ '0'..='7') => {
                let mut code = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|c| c.to_digit(8)) {
                        Some(v) => {
                            code = code * 8 + v;
                            self.bump();
                        }
                        None => break,
                    }
                }
                // At most 0o777, always a valid scalar value.
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            Some(marker @ ('x' | 'u' | 'U')) => {
                let digits = match marker {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut code: u32 = 0;
                for _ in 0..digits {
                    let Some(v) = self.peek().and_then(|c| c.to_digit(16)) else {
                        return Err(Fault::new(
                            column,
                            format!("invalid `\\{marker}` escape: expected {digits} hex digits"),
                        ));
                    };
                    code = code * 16 + v;
                    self.bump();
                }
                char::from_u32(code).ok_or_else(|| Fault::new(column, "invalid unicode escape"))?
            }
            Some('N') => {
                return Err(Fault::new(column, "`\\N{...}` escapes are not supported"));
            }
            Some(other) => {
                out.push('\\');
                other
            }
        };
        out.push(decoded);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(Kind, &str, usize)> {
        let mut lexer = Lexer::new(source);
        let mut out = Vec::new();
        loop {
            let tok = lexer.next_token().unwrap_or_else(|f| panic!("{f:?}"));
            if tok.kind == Kind::Eof {
                return out;
            }
            out.push((tok.kind, tok.text, tok.column));
        }
    }

    #[test]
    fn tokens_carry_text_and_character_columns() {
        assert_eq!(
            kinds("'é' a.b[0]>=.5 # comment\n!= x_1"),
            vec![
                (Kind::Str, "'é'", 1),
                (Kind::Ident, "a", 5),
                (Kind::Dot, ".", 6),
                (Kind::Ident, "b", 7),
                (Kind::LBracket, "[", 8),
                (Kind::Int, "0", 9),
                (Kind::RBracket, "]", 10),
                (Kind::Ge, ">=", 11),
                (Kind::Float, ".5", 13),
                (Kind::Ne, "!=", 26),
                (Kind::Ident, "x_1", 29),
            ]
        );
    }

    #[test]
    fn literal_payloads() {
        let mut lexer = Lexer::new("18446744073709551615 2.5e1 'a\\tb'");
        let payloads: Vec<Literal> = (0..3)
            .map(|_| {
                lexer
                    .next_token()
                    .map(|t| t.literal)
                    .unwrap_or(Literal::None)
            })
            .collect();
        assert_eq!(
            payloads,
            vec![
                Literal::Int(u64::MAX),
                Literal::Float(25.0),
                Literal::Str("a\tb".to_owned()),
            ]
        );
    }
}
