//! Syntax tree produced by the parser and walked by the evaluator.
//!
//! Operator chains (`a + b - c`, `a and b and c`, `a < b < c`) are stored
//! n-ary and dotted paths are flattened, so the tree's depth only grows with
//! explicit nesting (parentheses, subscripts, unary operators), which the
//! parser bounds. That keeps evaluation and `Drop` recursion shallow.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// One step of a postfix chain.
#[derive(Debug, Clone)]
pub(crate) enum Accessor {
    /// `.name`
    Field(String),
    /// `[expr]`; `column` is that of the `[`.
    Index { column: usize, index: Node },
}

/// A binary operator applied to the running result of an n-ary chain.
#[derive(Debug, Clone)]
pub(crate) struct Step<Op> {
    pub(crate) op: Op,
    pub(crate) column: usize,
    pub(crate) operand: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Literal(Value),
    /// A root variable resolved through the [`crate::Scope`].
    Var {
        name: String,
        column: usize,
    },
    /// `root.a.b.c`: the common case of an access chain, kept apart so that
    /// evaluation is a plain walk over borrowed objects.
    Path {
        name: String,
        column: usize,
        fields: Vec<String>,
    },
    /// `base.a[0].b`, flattened.
    Access {
        base: Box<Node>,
        accessors: Vec<Accessor>,
    },
    Neg {
        column: usize,
        operand: Box<Node>,
    },
    Not(Box<Node>),
    Arith {
        first: Box<Node>,
        rest: Vec<Step<ArithOp>>,
    },
    /// `first op1 x op2 y ...` with Python chaining semantics.
    Compare {
        first: Box<Node>,
        rest: Vec<Step<CmpOp>>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
}
