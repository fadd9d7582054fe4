DROP TABLE security_group_members;
DROP TABLE security_groups;
