DROP TABLE audit_forwarding;
