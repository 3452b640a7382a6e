//! The Erlang-term layer of acl.conf: a lexer and a parser for the subset of Erlang terms
//! `file:consult/1` reads that rule files use (atoms, strings, integers, tuples, lists), each
//! term ending with `.`. What the terms mean is [`super::rule`]'s business.

use super::{AclErrorKind, Located, Pos};

/// Deepest nesting of tuples and lists accepted (the rule grammar needs far less; and/or nesting
/// has its own, lower limit).
pub(crate) const MAX_TERM_DEPTH: usize = 64;

/// Longest integer literal accepted (QoS values are one digit).
const MAX_INT_DIGITS: usize = 18;

/// One Erlang term with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub(crate) kind: TermKind,
    pub(crate) pos: Pos,
}

/// The kinds of terms acl.conf uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TermKind {
    /// `allow`, `'and'`.
    Atom(String),
    /// `"t/1"` (also `<<"t/1">>`; adjacent strings are joined, as in Erlang).
    Str(String),
    /// `1`, `-1`.
    Int(i64),
    /// `{...}`.
    Tuple(Vec<Term>),
    /// `[...]`.
    List(Vec<Term>),
}

impl Term {
    /// How the term is named in "found ..." messages.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            TermKind::Atom(a) => format!("\"{a}\""),
            TermKind::Str(s) => format!("the string {}", quote(s)),
            TermKind::Int(i) => format!("the integer {i}"),
            TermKind::Tuple(items) => format!("a tuple of {} elements", items.len()),
            TermKind::List(_) => "a list".to_owned(),
        }
    }

    /// The atom's name, if the term is an atom.
    pub(crate) fn atom(&self) -> Option<&str> {
        match &self.kind {
            TermKind::Atom(a) => Some(a),
            _ => None,
        }
    }
}

/// `s` in double quotes, shortened and with control characters escaped, for messages.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Atom(String),
    Str(String),
    Int(i64),
    Eof,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::LBrace => "`{`".to_owned(),
            Token::RBrace => "`}`".to_owned(),
            Token::LBracket => "`[`".to_owned(),
            Token::RBracket => "`]`".to_owned(),
            Token::Comma => "`,`".to_owned(),
            Token::Dot => "`.`".to_owned(),
            Token::Atom(a) => format!("\"{a}\""),
            Token::Str(s) => format!("the string {}", quote(s)),
            Token::Int(i) => format!("the integer {i}"),
            Token::Eof => "the end of the file".to_owned(),
        }
    }
}

fn syntax(pos: Pos, message: impl Into<String>) -> Located {
    Located {
        pos,
        kind: AclErrorKind::Syntax,
        message: message.into(),
    }
}

/// Splits the text into tokens, tracking line and column (1-based, in characters).
struct Lexer<'a> {
    rest: &'a str,
    pos: Pos,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            rest: text,
            pos: Pos { line: 1, column: 1 },
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest.chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.rest.chars().next()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    /// Skips whitespace and `%` comments.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            if c == '%' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<(Token, Pos), Located> {
        self.skip_blank();
        let pos = self.pos;
        let Some(c) = self.peek() else {
            return Ok((Token::Eof, pos));
        };
        let token = match c {
            '{' | '}' | '[' | ']' | ',' | '.' => {
                self.bump();
                match c {
                    '{' => Token::LBrace,
                    '}' => Token::RBrace,
                    '[' => Token::LBracket,
                    ']' => Token::RBracket,
                    ',' => Token::Comma,
                    _ => Token::Dot,
                }
            }
            '"' => Token::Str(self.quoted('"')?),
            '\'' => Token::Atom(self.quoted('\'')?),
            '<' if self.peek2() == Some('<') => Token::Str(self.binary()?),
            '0'..='9' => Token::Int(self.integer(pos, false)?),
            '-' if self.peek2().is_some_and(|d| d.is_ascii_digit()) => {
                self.bump();
                Token::Int(self.integer(pos, true)?)
            }
            c if c.is_ascii_lowercase() => Token::Atom(self.word()),
            c if c.is_ascii_uppercase() || c == '_' => {
                let word = self.word();
                return Err(syntax(
                    pos,
                    format!("unexpected variable `{word}` (write atoms in lower case or in single quotes)"),
                ));
            }
            other => {
                return Err(syntax(
                    pos,
                    format!("unexpected character {}", quote(&other.to_string())),
                ));
            }
        };
        Ok((token, pos))
    }

    fn word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '@' {
                word.push(c);
                self.bump();
            } else {
                break;
            }
        }
        word
    }

    fn integer(&mut self, start: Pos, negative: bool) -> Result<i64, Located> {
        let mut value: i64 = 0;
        let mut digits = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            self.bump();
            digits += 1;
            if digits > MAX_INT_DIGITS {
                return Err(syntax(start, "integer too large"));
            }
            value = value * 10 + i64::from(d);
        }
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '#')
        {
            return Err(syntax(self.pos, "expected a digit or the end of the integer"));
        }
        Ok(if negative { -value } else { value })
    }

    /// `<<"text">>` (or `<<>>`): a binary, which EMQX treats like a string.
    fn binary(&mut self) -> Result<String, Located> {
        let start = self.pos;
        self.bump();
        self.bump();
        self.skip_blank();
        let mut text = String::new();
        if self.peek() == Some('"') {
            text = self.quoted('"')?;
            self.skip_blank();
        }
        if self.peek() == Some('>') && self.peek2() == Some('>') {
            self.bump();
            self.bump();
            Ok(text)
        } else {
            Err(syntax(
                start,
                "expected a binary of one string, like <<\"t/1\">>, closed by `>>`",
            ))
        }
    }

    /// A `"string"` or `'quoted atom'` with Erlang's escapes; the opening quote is next.
    fn quoted(&mut self, quote_char: char) -> Result<String, Located> {
        let start = self.pos;
        self.bump();
        let mut text = String::new();
        loop {
            let Some(c) = self.bump() else {
                let what = if quote_char == '"' { "string" } else { "quoted atom" };
                return Err(syntax(
                    start,
                    format!("unterminated {what} (missing closing {quote_char})"),
                ));
            };
            if c == quote_char {
                return Ok(text);
            }
            if c != '\\' {
                text.push(c);
                continue;
            }
            let escape_pos = self.pos;
            let Some(e) = self.bump() else {
                continue;
            };
            let decoded = match e {
                'b' => '\u{8}',
                'd' => '\u{7f}',
                'e' => '\u{1b}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                's' => ' ',
                't' => '\t',
                'v' => '\u{b}',
                '0'..='7' => {
                    let mut code = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                code = code * 8 + d;
                                self.bump();
                            }
                            None => break,
                        }
                    }
                    char::from_u32(code).unwrap_or('\u{fffd}')
                }
                'x' => self.hex_escape(escape_pos)?,
                '^' => match self.bump() {
                    Some(ctl) => char::from_u32(u32::from(ctl) & 0x1f).unwrap_or('\u{fffd}'),
                    None => continue,
                },
                // Erlang keeps any other escaped character as itself: \" \\ \' \. ...
                other => other,
            };
            text.push(decoded);
        }
    }

    /// `\xHH` or `\x{H...}` after the `x`.
    fn hex_escape(&mut self, pos: Pos) -> Result<char, Located> {
        let bad = || syntax(pos, "invalid \\x escape (expected \\xHH or \\x{H...})");
        let mut code: u32 = 0;
        if self.peek() == Some('{') {
            self.bump();
            let mut digits = 0;
            loop {
                match self.bump() {
                    Some('}') if digits > 0 => break,
                    Some(c) if c.is_ascii_hexdigit() && digits < 6 => {
                        code = code * 16 + c.to_digit(16).unwrap_or(0);
                        digits += 1;
                    }
                    _ => return Err(bad()),
                }
            }
        } else {
            for _ in 0..2 {
                match self.bump() {
                    Some(c) if c.is_ascii_hexdigit() => code = code * 16 + c.to_digit(16).unwrap_or(0),
                    _ => return Err(bad()),
                }
            }
        }
        char::from_u32(code).ok_or_else(bad)
    }
}

/// Reads tokens into terms.
struct Parser<'a> {
    lexer: Lexer<'a>,
    token: Token,
    pos: Pos,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, Located> {
        let mut lexer = Lexer::new(text);
        let (token, pos) = lexer.next()?;
        Ok(Parser { lexer, token, pos })
    }

    fn advance(&mut self) -> Result<Token, Located> {
        let (token, pos) = self.lexer.next()?;
        self.pos = pos;
        Ok(std::mem::replace(&mut self.token, token))
    }

    fn expected(&self, what: &str) -> Located {
        syntax(self.pos, format!("expected {what}, found {}", self.token.describe()))
    }

    fn term(&mut self, depth: usize) -> Result<Term, Located> {
        let pos = self.pos;
        let kind = match self.token {
            Token::Atom(_) | Token::Int(_) => match self.advance()? {
                Token::Atom(a) => TermKind::Atom(a),
                Token::Int(i) => TermKind::Int(i),
                _ => return Err(self.expected("a term")),
            },
            Token::Str(_) => {
                let mut text = String::new();
                while let Token::Str(s) = &self.token {
                    text.push_str(s);
                    self.advance()?;
                }
                TermKind::Str(text)
            }
            Token::LBrace | Token::LBracket => {
                if depth >= MAX_TERM_DEPTH {
                    return Err(Located {
                        pos,
                        kind: AclErrorKind::TooDeep,
                        message: format!("terms nested deeper than {MAX_TERM_DEPTH} levels"),
                    });
                }
                let tuple = self.token == Token::LBrace;
                self.advance()?;
                let close = if tuple { Token::RBrace } else { Token::RBracket };
                let mut items = Vec::new();
                if self.token != close {
                    loop {
                        items.push(self.term(depth + 1)?);
                        if self.token == Token::Comma {
                            self.advance()?;
                        } else if self.token == close {
                            break;
                        } else {
                            return Err(self.expected(if tuple { "`,` or `}`" } else { "`,` or `]`" }));
                        }
                    }
                }
                self.advance()?;
                if tuple {
                    TermKind::Tuple(items)
                } else {
                    TermKind::List(items)
                }
            }
            _ => return Err(self.expected("a term")),
        };
        Ok(Term { kind, pos })
    }
}

/// Parses every top-level term of `text`, each ended by `.`.
pub(crate) fn parse_terms(text: &str) -> Result<Vec<Term>, Located> {
    let mut parser = Parser::new(text)?;
    let mut terms = Vec::new();
    while parser.token != Token::Eof {
        if parser.token != Token::LBrace {
            return Err(parser.expected("a rule starting with `{`"));
        }
        let term = parser.term(0)?;
        if parser.token != Token::Dot {
            return Err(parser.expected("`.` after the rule"));
        }
        parser.advance()?;
        terms.push(term);
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TermKind> {
        parse_terms(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    /// Erlang-like rendering, for comparing parsed terms.
    fn show(t: &Term) -> String {
        let join = |items: &[Term]| items.iter().map(show).collect::<Vec<_>>().join(",");
        match &t.kind {
            TermKind::Atom(a) => a.clone(),
            TermKind::Str(s) => format!("{s:?}"),
            TermKind::Int(i) => i.to_string(),
            TermKind::Tuple(items) => format!("{{{}}}", join(items)),
            TermKind::List(items) => format!("[{}]", join(items)),
        }
    }

    fn shown(text: &str) -> Vec<String> {
        parse_terms(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
            .iter()
            .map(show)
            .collect()
    }

    #[test]
    fn atoms_strings_integers_and_nesting() {
        assert_eq!(
            shown("{allow, 'and', \"a\\\"b\\\\c\", -1, [x, {}], []}. {b}."),
            ["{allow,and,\"a\\\"b\\\\c\",-1,[x,{}],[]}", "{b}"]
        );
    }

    #[test]
    fn erlang_escapes_binaries_and_adjacent_strings() {
        assert_eq!(
            shown("{\"\\t\\s\\x41\\x{263A}\\101\\.\" \"x\", <<\"b\">>, << >>}."),
            ["{\"\\t A\u{263a}A.x\",\"b\",\"\"}"]
        );
    }

    #[test]
    fn comments_and_whitespace_anywhere() {
        let text = "% header\n\t{ allow %c\n ,\r\n all\n}  % trailing\n. %% end";
        assert_eq!(kinds(text).len(), 1);
        assert_eq!(kinds("{a, \"100% sure\"}.").len(), 1, "% inside a string is no comment");
        assert!(kinds("").is_empty());
        assert!(kinds("%% only a comment").is_empty());
    }

    #[test]
    fn positions_are_line_and_column() {
        let terms = parse_terms("\n  {a,\n   b}.").unwrap_or_default();
        assert_eq!(terms[0].pos, Pos { line: 2, column: 3 });
        let TermKind::Tuple(items) = &terms[0].kind else {
            panic!("not a tuple");
        };
        assert_eq!(items[1].pos, Pos { line: 3, column: 4 });
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        let cases = [
            ("{a, b}", 1, 7, "expected `.` after the rule, found the end of the file"),
            ("{a, b]", 1, 6, "expected `,` or `}`, found `]`"),
            ("\n{a, \"open", 2, 5, "unterminated string"),
            ("{a, Var}.", 1, 5, "unexpected variable `Var`"),
            ("{a, #}.", 1, 5, "unexpected character \"#\""),
            ("allow.", 1, 1, "expected a rule starting with `{`, found \"allow\""),
            ("{a, 99999999999999999999}.", 1, 5, "integer too large"),
            ("{a, <<\"x\" \"y\">>}.", 1, 5, "expected a binary"),
            ("{a, \"\\xZZ\"}.", 1, 7, "invalid \\x escape"),
            ("{a,,}.", 1, 4, "expected a term, found `,`"),
        ];
        for (text, line, column, message) in cases {
            let err = parse_terms(text).expect_err(text);
            assert_eq!((err.pos.line, err.pos.column), (line, column), "{text:?}: {err:?}");
            assert!(err.message.contains(message), "{text:?}: {}", err.message);
            assert_eq!(err.kind, AclErrorKind::Syntax);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}.", "{".repeat(200), "}".repeat(200));
        let err = parse_terms(&deep).expect_err("too deep");
        assert_eq!(err.kind, AclErrorKind::TooDeep);
        let nested = |lists: usize| format!("{{{}{}}}.", "[".repeat(lists), "]".repeat(lists));
        assert!(parse_terms(&nested(MAX_TERM_DEPTH - 1)).is_ok());
        assert_eq!(
            parse_terms(&nested(MAX_TERM_DEPTH)).map_err(|e| e.kind),
            Err(AclErrorKind::TooDeep)
        );
    }
}
