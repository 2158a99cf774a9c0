//! Recursive-descent parser from tokens to [`Node`]s.
//!
//! Recursion only happens for explicit nesting (parentheses, subscripts,
//! `not`, unary `-`), and every such level is counted against
//! [`MAX_DEPTH`], so hostile input cannot overflow the stack.

use serde_json::{Number, Value};

use crate::ast::{Accessor, ArithOp, CmpOp, Node, Step};
use crate::error::Fault;
use crate::lexer::{Kind, Lexer, Literal, Token};

/// Deepest allowed nesting of parentheses, subscripts and unary operators.
pub(crate) const MAX_DEPTH: usize = 64;

/// Python keywords. Kept reserved so that expressions stay valid Python,
/// which the reference engine parses with `ast.parse`.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// Result of a successful parse.
pub(crate) struct Parsed {
    pub(crate) root: Node,
    /// Root variables in source order, possibly repeated.
    pub(crate) variables: Vec<(String, usize)>,
}

pub(crate) fn parse(source: &str) -> Result<Parsed, Fault> {
    let mut parser = Parser {
        lexer: Lexer::new(source),
        peeked: None,
        prev: "",
        depth: 0,
        variables: Vec::new(),
    };
    let root = parser.expr()?;
    let tok = parser.peek()?;
    if tok.kind != Kind::Eof {
        let message = format!("unexpected `{}`", tok.text);
        return Err(Fault::new(tok.column, message));
    }
    Ok(Parsed {
        root,
        variables: parser.variables,
    })
}

struct Parser<'src> {
    lexer: Lexer<'src>,
    peeked: Option<Token<'src>>,
    /// Text of the last consumed token, for "expected a value after `x`".
    prev: &'src str,
    depth: usize,
    variables: Vec<(String, usize)>,
}

impl<'src> Parser<'src> {
    fn peek(&mut self) -> Result<&Token<'src>, Fault> {
        let tok = match self.peeked.take() {
            Some(tok) => tok,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(tok))
    }

    /// Kind, text and column of the next token, copied out so the parser
    /// can keep calling `&mut self` methods.
    fn peek_info(&mut self) -> Result<(Kind, &'src str, usize), Fault> {
        let tok = self.peek()?;
        Ok((tok.kind, tok.text, tok.column))
    }

    fn advance(&mut self) -> Result<Token<'src>, Fault> {
        let tok = match self.peeked.take() {
            Some(tok) => tok,
            None => self.lexer.next_token()?,
        };
        self.prev = tok.text;
        Ok(tok)
    }

    fn peek_is_word(&mut self, word: &str) -> Result<bool, Fault> {
        let tok = self.peek()?;
        Ok(tok.kind == Kind::Ident && tok.text == word)
    }

    /// Runs `inner` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        column: usize,
        inner: impl FnOnce(&mut Self) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        if self.depth >= MAX_DEPTH {
            return Err(Fault::new(
                column,
                format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn expected_value(&mut self) -> Fault {
        let (kind, text, column) = match self.peek_info() {
            Ok(info) => info,
            Err(fault) => return fault,
        };
        let mut message = if self.prev.is_empty() {
            "expected a value".to_owned()
        } else {
            format!("expected a value after `{}`", self.prev)
        };
        if kind != Kind::Eof {
            message.push_str(&format!(", found `{text}`"));
        }
        Fault::new(column, message)
    }

    fn expr(&mut self) -> Result<Node, Fault> {
        let node = self.or_expr()?;
        if self.peek_is_word("if")? {
            let column = self.peek()?.column;
            return Err(Fault::new(
                column,
                "conditional expressions (`if`/`else`) are not supported",
            ));
        }
        Ok(node)
    }

    fn or_expr(&mut self) -> Result<Node, Fault> {
        let first = self.and_expr()?;
        if !self.peek_is_word("or")? {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek_is_word("or")? {
            self.advance()?;
            operands.push(self.and_expr()?);
        }
        Ok(Node::Or(operands))
    }

    fn and_expr(&mut self) -> Result<Node, Fault> {
        let first = self.not_expr()?;
        if !self.peek_is_word("and")? {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek_is_word("and")? {
            self.advance()?;
            operands.push(self.not_expr()?);
        }
        Ok(Node::And(operands))
    }

    fn not_expr(&mut self) -> Result<Node, Fault> {
        if !self.peek_is_word("not")? {
            return self.comparison();
        }
        let column = self.advance()?.column;
        let operand = self.nested(column, Self::not_expr)?;
        Ok(Node::Not(Box::new(operand)))
    }

    fn comparison(&mut self) -> Result<Node, Fault> {
        let first = self.sum()?;
        let mut rest = Vec::new();
        loop {
            let (kind, text, column) = self.peek_info()?;
            let op = match kind {
                Kind::Eq => CmpOp::Eq,
                Kind::Ne => CmpOp::Ne,
                Kind::Lt => CmpOp::Lt,
                Kind::Le => CmpOp::Le,
                Kind::Gt => CmpOp::Gt,
                Kind::Ge => CmpOp::Ge,
                Kind::Ident if matches!(text, "in" | "is" | "not") => {
                    return Err(self.unsupported_membership(text, column));
                }
                _ => break,
            };
            self.advance()?;
            let operand = self.sum()?;
            rest.push(Step {
                op,
                column,
                operand,
            });
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Node::Compare {
                first: Box::new(first),
                rest,
            })
        }
    }

    /// Names `in`, `not in`, `is` and `is not` in the error, which needs a
    /// look at the word after the first one.
    fn unsupported_membership(&mut self, word: &str, column: usize) -> Fault {
        if let Err(fault) = self.advance() {
            return fault;
        }
        let operator = match word {
            "not" => match self.peek_is_word("in") {
                Ok(true) => "not in",
                Ok(false) => return Fault::new(column, "unexpected `not`"),
                Err(fault) => return fault,
            },
            "is" => match self.peek_is_word("not") {
                Ok(true) => "is not",
                Ok(false) => "is",
                Err(fault) => return fault,
            },
            _ => "in",
        };
        Fault::new(column, format!("operator `{operator}` is not supported"))
    }

    fn sum(&mut self) -> Result<Node, Fault> {
        self.arith_chain(Self::term, |kind| match kind {
            Kind::Plus => Some(ArithOp::Add),
            Kind::Minus => Some(ArithOp::Sub),
            _ => None,
        })
    }

    fn term(&mut self) -> Result<Node, Fault> {
        self.arith_chain(Self::unary, |kind| match kind {
            Kind::Star => Some(ArithOp::Mul),
            Kind::Slash => Some(ArithOp::Div),
            _ => None,
        })
    }

    fn arith_chain(
        &mut self,
        operand: fn(&mut Self) -> Result<Node, Fault>,
        op_of: fn(Kind) -> Option<ArithOp>,
    ) -> Result<Node, Fault> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        loop {
            let (kind, _, column) = self.peek_info()?;
            let Some(op) = op_of(kind) else { break };
            self.advance()?;
            rest.push(Step {
                op,
                column,
                operand: operand(self)?,
            });
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Node::Arith {
                first: Box::new(first),
                rest,
            })
        }
    }

    fn unary(&mut self) -> Result<Node, Fault> {
        let (kind, _, column) = self.peek_info()?;
        match kind {
            Kind::Minus => {
                self.advance()?;
                self.nested(column, |p| p.negation(column))
            }
            Kind::Plus => Err(Fault::new(column, "unary `+` is not supported")),
            _ => self.postfix(),
        }
    }

    /// Operand of a unary `-` whose sign was consumed; number literals are
    /// folded so that `-9223372036854775808` is representable.
    fn negation(&mut self, column: usize) -> Result<Node, Fault> {
        let tok = self.peek()?;
        if let Literal::Int(n) = tok.literal
            && n == i64::MIN.unsigned_abs()
        {
            let tok = self.advance()?;
            if matches!(self.peek()?.kind, Kind::Dot | Kind::LBracket | Kind::LParen) {
                return Err(Fault::new(tok.column, "integer literal too large"));
            }
            return Ok(Node::Literal(Value::from(i64::MIN)));
        }
        let operand = self.unary()?;
        let folded = match &operand {
            Node::Literal(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    i.checked_neg().map(Value::from)
                } else {
                    n.as_f64()
                        .and_then(|f| Number::from_f64(-f))
                        .map(Value::Number)
                }
            }
            _ => None,
        };
        Ok(match folded {
            Some(value) => Node::Literal(value),
            None => Node::Neg {
                column,
                operand: Box::new(operand),
            },
        })
    }

    fn postfix(&mut self) -> Result<Node, Fault> {
        let base = self.atom()?;
        let mut accessors = Vec::new();
        loop {
            let (kind, _, column) = self.peek_info()?;
            match kind {
                Kind::Dot => {
                    self.advance()?;
                    accessors.push(Accessor::Field(self.field_name()?));
                }
                Kind::LBracket => {
                    self.advance()?;
                    let index = self.nested(column, |p| p.subscript(column))?;
                    accessors.push(Accessor::Index { column, index });
                }
                Kind::LParen => {
                    return Err(Fault::new(column, "function calls are not supported"));
                }
                _ => break,
            }
        }
        if accessors.is_empty() {
            return Ok(base);
        }
        match base {
            Node::Var { name, column }
                if accessors.iter().all(|a| matches!(a, Accessor::Field(_))) =>
            {
                let fields = accessors
                    .into_iter()
                    .filter_map(|accessor| match accessor {
                        Accessor::Field(field) => Some(field),
                        Accessor::Index { .. } => None,
                    })
                    .collect();
                Ok(Node::Path {
                    name,
                    column,
                    fields,
                })
            }
            base => Ok(Node::Access {
                base: Box::new(base),
                accessors,
            }),
        }
    }

    fn field_name(&mut self) -> Result<String, Fault> {
        let (kind, text, column) = self.peek_info()?;
        if kind != Kind::Ident {
            let mut message = "expected a field name after `.`".to_owned();
            if kind != Kind::Eof {
                message.push_str(&format!(", found `{text}`"));
            }
            return Err(Fault::new(column, message));
        }
        if is_keyword(text) {
            return Err(Fault::new(
                column,
                format!(
                    "`{text}` is a reserved word and cannot be a field name (use `[\"{text}\"]`)"
                ),
            ));
        }
        self.advance()?;
        Ok(text.to_owned())
    }

    /// Contents of `[...]` after the `[`, including the closing bracket.
    fn subscript(&mut self, open_column: usize) -> Result<Node, Fault> {
        let index = self.expr()?;
        let (kind, text, column) = self.peek_info()?;
        match kind {
            Kind::RBracket => {
                self.advance()?;
                Ok(index)
            }
            Kind::Colon => Err(Fault::new(column, "slices are not supported")),
            Kind::Comma => Err(Fault::new(column, "tuple subscripts are not supported")),
            Kind::Eof => Err(Fault::new(
                column,
                format!("expected `]` to close `[` at column {open_column}"),
            )),
            _ => Err(Fault::new(column, format!("expected `]`, found `{text}`"))),
        }
    }

    fn atom(&mut self) -> Result<Node, Fault> {
        let (kind, text, column) = self.peek_info()?;
        match kind {
            Kind::Int | Kind::Float => {
                let tok = self.advance()?;
                number_literal(&tok).map(Node::Literal)
            }
            Kind::Str => self.strings().map(|s| Node::Literal(Value::String(s))),
            Kind::Ident => self.word(text, column),
            Kind::LParen => {
                self.advance()?;
                self.nested(column, |p| p.parenthesized(column))
            }
            Kind::LBracket => Err(Fault::new(column, "list literals are not supported")),
            _ => Err(self.expected_value()),
        }
    }

    /// Adjacent string literals concatenate, as in Python.
    fn strings(&mut self) -> Result<String, Fault> {
        let mut out = String::new();
        while self.peek()?.kind == Kind::Str {
            if let Literal::Str(s) = self.advance()?.literal {
                out.push_str(&s);
            }
        }
        Ok(out)
    }

    fn word(&mut self, text: &'src str, column: usize) -> Result<Node, Fault> {
        let literal = match text {
            "true" | "True" => Some(Value::Bool(true)),
            "false" | "False" => Some(Value::Bool(false)),
            "null" | "None" => Some(Value::Null),
            _ => None,
        };
        if let Some(value) = literal {
            self.advance()?;
            return Ok(Node::Literal(value));
        }
        match text {
            "lambda" => Err(Fault::new(column, "lambda is not supported")),
            "and" | "or" | "not" | "in" | "is" | "if" | "else" => Err(self.expected_value()),
            _ if is_keyword(text) => {
                Err(Fault::new(column, format!("`{text}` is a reserved word")))
            }
            _ => {
                self.advance()?;
                self.variables.push((text.to_owned(), column));
                Ok(Node::Var {
                    name: text.to_owned(),
                    column,
                })
            }
        }
    }

    /// Contents of `(...)` after the `(`, including the closing parenthesis.
    fn parenthesized(&mut self, open_column: usize) -> Result<Node, Fault> {
        if self.peek()?.kind == Kind::RParen {
            return Err(Fault::new(
                open_column,
                "empty parentheses are not supported",
            ));
        }
        let inner = self.expr()?;
        let (kind, text, column) = self.peek_info()?;
        match kind {
            Kind::RParen => {
                self.advance()?;
                Ok(inner)
            }
            Kind::Comma => Err(Fault::new(column, "tuples are not supported")),
            Kind::Eof => Err(Fault::new(
                column,
                format!("expected `)` to close `(` at column {open_column}"),
            )),
            _ => Err(Fault::new(column, format!("expected `)`, found `{text}`"))),
        }
    }
}

fn number_literal(tok: &Token<'_>) -> Result<Value, Fault> {
    match tok.literal {
        Literal::Int(n) => i64::try_from(n)
            .map(Value::from)
            .map_err(|_| Fault::new(tok.column, "integer literal too large")),
        Literal::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| Fault::new(tok.column, "float literal out of range")),
        _ => Err(Fault::new(tok.column, "invalid number literal")),
    }
}
